package intunedsim

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A finished JobRun's results file stands in for the S3 object Intuned's
// Get Job Run points at with a presigned URL. The simulator signs its URLs
// the way S3 presigns (query parameters X-Amz-Date, X-Amz-Expires and
// X-Amz-Signature, here an HMAC-SHA256 with a key drawn when the Server is
// built), judges expiry on the simulator clock, answers refusals with S3's
// XML error bodies and serves the file with Range support (http.ServeContent).

// DefaultResultsURLLifetime is how long a results URL stays valid, in
// simulated time. Intuned does not document it: one hour is a guess.
const DefaultResultsURLLifetime = time.Hour

// amzDate is the layout of X-Amz-Date (ISO 8601 basic format, UTC).
const amzDate = "20060102T150405Z"

// ResultsFault makes the results of matching JobRuns misbehave, for tests of
// a client that backfills from the results file. The first rule whose
// JobRunID matches (or is empty) applies.
type ResultsFault struct {
	// JobRunID selects one JobRun; "" selects every JobRun.
	JobRunID string `json:"jobRunId,omitempty"`
	// Format, when set, is reported as Get Job Run's results.format instead
	// of "jsonl" (e.g. "parquet"); the file itself is unchanged.
	Format string `json:"format,omitempty"`
	// CorruptLine, when > 0, replaces that line (1-based) of the file with
	// text that is not JSON. size and every download reflect the change.
	CorruptLine int `json:"corruptLine,omitempty"`
	// TruncateLine, when > 0, cuts downloads in the middle of that line
	// (1-based): the answer declares the full length, sends the bytes up
	// to the cut and closes the connection, as a dropped transfer does.
	// A ranged download that starts after the cut is served whole.
	TruncateLine int `json:"truncateLine,omitempty"`
	// Times, when > 0, limits TruncateLine to the next Times downloads it
	// cuts; later downloads are whole.
	Times int `json:"times,omitempty"`
}

func (f ResultsFault) valid() bool {
	return f.CorruptLine >= 0 && f.TruncateLine >= 0 && f.Times >= 0
}

// SetResultsFaults replaces the results faults.
func (s *Server) SetResultsFaults(rules []ResultsFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resultsFaults = append([]ResultsFault(nil), rules...)
}

// ResultsFaults returns the current results faults.
func (s *Server) ResultsFaults() []ResultsFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ResultsFault(nil), s.resultsFaults...)
}

// SetResultsURLLifetime sets the lifetime of the results URLs Get Job Run
// hands out from now on (URLs already handed out keep theirs). It is
// rounded down to whole seconds, as X-Amz-Expires counts, and at least 1 s.
func (s *Server) SetResultsURLLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resultsTTL = max(d.Truncate(time.Second), time.Second)
}

// ResultsURLLifetime returns the lifetime of new results URLs.
func (s *Server) ResultsURLLifetime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resultsTTL
}

// resultsFaultLocked returns the fault rule for a JobRun (index -1: none).
func (s *Server) resultsFaultLocked(jobRunID string) (ResultsFault, int) {
	for i, f := range s.resultsFaults {
		if f.JobRunID == "" || f.JobRunID == jobRunID {
			return f, i
		}
	}
	return ResultsFault{}, -1
}

// jobRunLocked finds a JobRun by id in any workspace and project.
func (s *Server) jobRunLocked(id string) *jobRun {
	for _, jobs := range s.jobs {
		for _, j := range jobs {
			for _, jr := range j.runs {
				if jr.id == id {
					return jr
				}
			}
		}
	}
	return nil
}

// ResultsFile returns the JSONL results of a finished JobRun as they are
// served (a CorruptLine fault included).
func (s *Server) ResultsFile(jobRunID string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jr := s.jobRunLocked(jobRunID)
	if jr == nil || jr.active() {
		return nil, false
	}
	f, _ := s.resultsFaultLocked(jobRunID)
	return jr.resultsFile(f), true
}

// resultsJSONL is a finished JobRun's results file: one line per Run that
// finished (completed or failed, extended payloads included, whatever the
// sink filters), each the apiInfo object of that Run's sink body, in the
// order the Runs finished. A Run's retried attempts are one line: its
// final outcome.
func (jr *jobRun) resultsJSONL() []byte {
	var buf []byte
	for _, run := range jr.apiRuns {
		line, _ := json.Marshal(apiInfoOf(run))
		buf = append(append(buf, line...), '\n')
	}
	return buf
}

// resultsFile is resultsJSONL with f's CorruptLine applied.
func (jr *jobRun) resultsFile(f ResultsFault) []byte {
	b := jr.resultsJSONL()
	start, end, ok := lineBounds(b, f.CorruptLine)
	if !ok {
		return b
	}
	bad := fmt.Appendf(nil, "not JSON: line %d corrupted by intuned-sim", f.CorruptLine)
	return append(append(append([]byte(nil), b[:start]...), bad...), b[end:]...)
}

// lineBounds returns the byte range of line n (1-based), newline excluded.
func lineBounds(b []byte, n int) (start, end int, ok bool) {
	if n <= 0 {
		return 0, 0, false
	}
	for i := 1; i < n; i++ {
		nl := bytes.IndexByte(b[start:], '\n')
		if nl < 0 {
			return 0, 0, false
		}
		start += nl + 1
	}
	if start >= len(b) {
		return 0, 0, false
	}
	end = len(b)
	if nl := bytes.IndexByte(b[start:], '\n'); nl >= 0 {
		end = start + nl
	}
	return start, end, true
}

// resultsLocked is Get Job Run's results object for a finished JobRun,
// with a URL on the host the client asked.
func (s *Server) resultsLocked(jr *jobRun, c *reqCtx) *jobRunResults {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	f, _ := s.resultsFaultLocked(jr.id)
	format := "jsonl"
	if f.Format != "" {
		format = f.Format
	}
	date := s.clock.Now().UTC().Truncate(time.Second)
	path := "/_sim/results/" + jr.id + ".jsonl"
	q := s.signResults(path, date, s.resultsTTL)
	return &jobRunResults{
		SignedURL:           scheme + "://" + c.r.Host + path + "?" + q.Encode(),
		Format:              format,
		SignedURLExpiration: isoTime(date.Add(s.resultsTTL)),
		Size:                len(jr.resultsFile(f)),
		Key:                 c.ws + "/" + c.project + "/" + jr.job.spec.ID + "/" + jr.id + ".jsonl",
	}
}

// signResults returns the presigned query of path, valid for ttl from date.
func (s *Server) signResults(path string, date time.Time, ttl time.Duration) url.Values {
	q := url.Values{}
	q.Set("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
	q.Set("X-Amz-Credential", "INTUNEDSIM/"+date.Format("20060102")+"/us-east-1/s3/aws4_request")
	q.Set("X-Amz-Date", date.Format(amzDate))
	q.Set("X-Amz-Expires", strconv.FormatInt(int64(ttl/time.Second), 10))
	q.Set("X-Amz-SignedHeaders", "host")
	q.Set("X-Amz-Signature", s.resultsSignature(path, q))
	return q
}

// resultsSignature signs the path and the query's date, lifetime and
// credential, so that none of them can be changed without the key.
func (s *Server) resultsSignature(path string, q url.Values) string {
	mac := hmac.New(sha256.New, s.resultsKey)
	fmt.Fprintf(mac, "GET\n%s\n%s\n%s\n%s", path, q.Get("X-Amz-Credential"), q.Get("X-Amz-Date"), q.Get("X-Amz-Expires"))
	return hex.EncodeToString(mac.Sum(nil))
}

// newResultsKey draws the signing key of one Server.
func newResultsKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand panics instead)
	return k
}

// serveResults serves GET/HEAD /_sim/results/{jobRunId}.jsonl: the signature
// is checked first, then expiry on the simulator clock, then the file.
func (s *Server) serveResults(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	got := q.Get("X-Amz-Signature")
	if got == "" || !hmac.Equal([]byte(got), []byte(s.resultsSignature(r.URL.Path, q))) {
		s3Error(w, http.StatusForbidden, s3ErrorBody{Code: "SignatureDoesNotMatch",
			Message: "The request signature we calculated does not match the signature you provided. Check your key and signing method."})
		return
	}
	date, err1 := time.Parse(amzDate, q.Get("X-Amz-Date"))
	secs, err2 := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		// Signed by us, so only a bug gets here.
		s3Error(w, http.StatusBadRequest, s3ErrorBody{Code: "AuthorizationQueryParametersError", Message: err.Error()})
		return
	}
	now := s.clock.Now().UTC()
	if expires := date.Add(time.Duration(secs) * time.Second); now.After(expires) {
		s3Error(w, http.StatusForbidden, s3ErrorBody{Code: "AccessDenied", Message: "Request has expired",
			XAmzExpires: q.Get("X-Amz-Expires"), Expires: expires.Format(time.RFC3339), ServerTime: now.Format(time.RFC3339)})
		return
	}

	id := strings.TrimSuffix(r.PathValue("file"), ".jsonl")
	s.mu.Lock()
	jr := s.jobRunLocked(id)
	if jr == nil || jr.active() {
		s.mu.Unlock()
		s3Error(w, http.StatusNotFound, s3ErrorBody{Code: "NoSuchKey", Message: "The specified key does not exist."})
		return
	}
	f, rule := s.resultsFaultLocked(id)
	body := jr.resultsFile(f)
	modified := *jr.end
	s.mu.Unlock()

	sum := md5.Sum(body)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	var content io.ReadSeeker = bytes.NewReader(body)
	if start, end, ok := lineBounds(body, f.TruncateLine); ok {
		cut := int64(start + max(1, (end-start)/2))
		content = &cutReader{Reader: bytes.NewReader(body), cut: cut, onCut: func() { s.usedTruncation(rule) }}
	}
	http.ServeContent(w, r, "", modified, content)
}

// usedTruncation counts down the Times of the results fault at index i.
func (s *Server) usedTruncation(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.resultsFaults) || s.resultsFaults[i].Times == 0 {
		return
	}
	f := &s.resultsFaults[i]
	if f.Times--; f.Times == 0 {
		f.TruncateLine = 0
	}
}

// cutReader is the file behind a dropped transfer: reading stops with an
// error at offset cut, unless the first read starts at or after it (a
// ranged download that resumes beyond the cut). http.ServeContent then
// ends the response short of its Content-Length, and net/http closes the
// connection, so the client sees an unexpected EOF.
type cutReader struct {
	*bytes.Reader
	cut            int64
	onCut          func()
	started, whole bool
	didCut         bool
}

var errTransferCut = errors.New("intuned-sim: results transfer cut (fault)")

func (c *cutReader) Read(p []byte) (int, error) {
	pos := c.Size() - int64(c.Len())
	if !c.started {
		c.started, c.whole = true, pos >= c.cut
	}
	if c.whole {
		return c.Reader.Read(p)
	}
	if pos >= c.cut {
		if !c.didCut {
			c.didCut = true
			c.onCut()
		}
		return 0, errTransferCut
	}
	if room := c.cut - pos; int64(len(p)) > room {
		p = p[:room]
	}
	return c.Reader.Read(p)
}

// s3ErrorBody is S3's XML error document.
type s3ErrorBody struct {
	XMLName     xml.Name `xml:"Error"`
	Code        string   `xml:"Code"`
	Message     string   `xml:"Message"`
	XAmzExpires string   `xml:"X-Amz-Expires,omitempty"`
	Expires     string   `xml:"Expires,omitempty"`
	ServerTime  string   `xml:"ServerTime,omitempty"`
	RequestID   string   `xml:"RequestId"`
}

func s3Error(w http.ResponseWriter, status int, e s3ErrorBody) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	e.RequestID = strings.ToUpper(hex.EncodeToString(id[:]))
	b, _ := xml.Marshal(e)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}
