package intuned

import (
	"context"
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

// A finished JobRun's Get Job Run answer carries results: a presigned
// (bearer) URL of the JobRun's aggregate results file in object storage.
// OpenResults streams that file; it knows nothing of formats (the caller
// checks JobRunResults.Format first).

// Expires returns when SignedURL stops working, from signed_url_expiration;
// false when Intuned sent none or one that does not parse.
func (r *JobRunResults) Expires() (time.Time, bool) {
	if r == nil || r.SignedURLExpiration == "" {
		return time.Time{}, false
	}
	return ParseTime(r.SignedURLExpiration)
}

// ErrResultsURLExpired means the results URL no longer works (expired, or
// its signature is refused): call Get Job Run again for a fresh one.
var ErrResultsURLExpired = errors.New("intuned: results URL expired or refused; get the JobRun again for a new one")

// ResultsError is a non-2xx answer to a results download. It wraps
// ErrResultsURLExpired when a fresh URL is the remedy. It never holds the
// URL's query: that is the credential.
type ResultsError struct {
	StatusCode int
	// Code and Message are the object store's error (S3: <Code>, <Message>).
	Code, Message string
	// Object is the URL without its query, for messages.
	Object string
}

func (e *ResultsError) Error() string {
	msg := fmt.Sprintf("intuned: results download %s: HTTP %d", e.Object, e.StatusCode)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Unwrap lets errors.Is(err, ErrResultsURLExpired) find a refused URL.
func (e *ResultsError) Unwrap() error {
	if e.urlRefused() {
		return ErrResultsURLExpired
	}
	return nil
}

// urlRefused reports whether the store refused the URL itself, as S3 does
// for a presigned URL past X-Amz-Expires (403 AccessDenied "Request has
// expired"), a bad signature (403 SignatureDoesNotMatch, or 400 for
// malformed query parameters) and expired temporary credentials
// (400 ExpiredToken). Any 403 counts: a fresh URL is the only remedy a
// client has.
func (e *ResultsError) urlRefused() bool {
	switch {
	case e.StatusCode == http.StatusForbidden:
		return true
	case e.StatusCode == http.StatusBadRequest:
		switch e.Code {
		case "SignatureDoesNotMatch", "AuthorizationQueryParametersError", "ExpiredToken", "AccessDenied":
			return true
		}
	}
	return false
}

// OpenResults starts downloading a JobRun's results file from offset
// (0: the start), for resuming a download that broke off. It sends no
// Intuned credentials: the signed URL is the credential. With offset > 0 it
// asks for Range: bytes=offset-; a server that answers 200 with the whole
// file instead has the first offset bytes skipped here. An offset at the
// end of a file of known size gives an empty body without a request.
//
// Errors: *ResultsError for a non-2xx answer (errors.Is
// ErrResultsURLExpired when a fresh URL is needed), or a transport error
// without the URL's query. httpClient nil means http.DefaultClient. The
// caller closes the body; ctx bounds the whole download.
func OpenResults(ctx context.Context, httpClient *http.Client, r *JobRunResults, offset int64) (io.ReadCloser, error) {
	if r == nil || r.SignedURL == "" {
		return nil, errors.New("intuned: JobRun has no results URL")
	}
	u, err := url.Parse(r.SignedURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("intuned: results URL is not an absolute http(s) URL")
	}
	object := u.Scheme + "://" + u.Host + u.EscapedPath()
	if offset < 0 || (r.Size != nil && offset > *r.Size) {
		return nil, fmt.Errorf("intuned: results download %s: offset %d outside the file", object, offset)
	}
	if r.Size != nil && offset == *r.Size && offset > 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.SignedURL, nil)
	if err != nil {
		return nil, fmt.Errorf("intuned: results download %s: %w", object, err)
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("intuned: results download %s: %w", object, withoutURL(err))
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != offset {
			resp.Body.Close()
			return nil, fmt.Errorf("intuned: results download %s: asked from byte %d, got Content-Range %q", object, offset, resp.Header.Get("Content-Range"))
		}
		return resp.Body, nil
	case resp.StatusCode == http.StatusOK:
		// The whole file: skip what the caller already has.
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("intuned: results download %s: skipping to byte %d: %w", object, offset, withoutURL(err))
		}
		return resp.Body, nil
	}
	defer resp.Body.Close()
	e := &ResultsError{StatusCode: resp.StatusCode, Object: object}
	var body struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)); xml.Unmarshal(b, &body) == nil {
		e.Code, e.Message = body.Code, body.Message
	}
	return nil, e
}

// rangeStart reads the first byte position of "bytes first-last/size".
func rangeStart(cr string) (int64, bool) {
	spec, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

// withoutURL drops the URL (whose query is a credential) from a client
// error, keeping the cause.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
