package intunedsim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// JobRun types and statuses as Intuned reports them.
const (
	JobRunManual    = "MANUAL"
	JobRunScheduled = "SCHEDULED"

	// JobRunPending is the status while payloads are queued or executing
	// (Intuned has no RUNNING status).
	JobRunPending    = "PENDING"
	JobRunPaused     = "PAUSED"
	JobRunCompleted  = "COMPLETED"
	JobRunFailure    = "FAILURE"
	JobRunTerminated = "TERMINATED"
)

// jobRun is one execution of a Job. The lifecycle the simulator models:
//
//	PENDING (queued and executing) ⇄ PAUSED (job paused: no new payloads start)
//	→ COMPLETED when every Run finished and at least one succeeded (or there were none)
//	→ FAILURE   when every Run finished and all of them failed
//	→ TERMINATED on terminate (queued payloads are dropped, executing Runs cancelled)
type jobRun struct {
	id        string
	job       *job
	typ       string
	status    string
	created   time.Time
	updated   time.Time
	start     *time.Time
	end       *time.Time
	reason    *jobRunReason
	err       *jobRunError
	snapshot  configSnapshot
	sink      *sinkWire // snapshot of the sink used for deliveries
	authID    string
	maxConc   int
	payloads  int
	succeeded int
	failed    int
	queue     []payloadItem
	inflight  int
	paused    bool
	ctx       context.Context
	cancel    context.CancelFunc
	apiRuns   []*APIRun
}

// APIRun is one executed payload item (an Intuned "Run").
type APIRun struct {
	RunID      string          `json:"runId"`
	JobRunID   string          `json:"jobRunId"`
	APIName    string          `json:"apiName"`
	Parameters json.RawMessage `json:"parameters"`
	Status     string          `json:"status"` // completed | failed
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *RunError       `json:"error,omitempty"`
	Attempts   int             `json:"attempts"`
	StartedAt  time.Time       `json:"startedAt"`
	EndedAt    time.Time       `json:"endedAt"`
}

func (s *Server) triggerJob(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, apiErr := s.lookupLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	jr := s.startJobRunLocked(j, JobRunManual)
	return http.StatusOK, triggerResponse{JobRunID: jr.id, Message: "Triggered"}, nil
}

// startJobRunLocked creates a JobRun from the job's current configuration
// and starts executing it. A job paused at this moment gets a PAUSED run that
// proceeds on resume. Concurrent JobRuns of one job are allowed.
func (s *Server) startJobRunLocked(j *job, typ string) *jobRun {
	now := s.clock.Now()
	var sink *sinkWire
	if j.spec.Sink != nil {
		cp := *j.spec.Sink
		sink = &cp
	}
	maxConc := DefaultMaxConcurrentRequests
	if m := j.spec.Configuration.MaxConcurrentRequests; m != nil {
		maxConc = max(1, int(*m))
	}
	jr := &jobRun{
		id: s.ids.uuid(), job: j, typ: typ, status: JobRunPending,
		created: now, updated: now, start: &now,
		snapshot: configSnapshot{
			Configuration: j.spec.Configuration,
			Sink:          sink,
			AuthSession:   j.spec.AuthSession,
			Proxy:         proxyObj(j.spec.Proxy),
		},
		sink:     sink,
		maxConc:  maxConc,
		payloads: len(j.spec.Payload),
		queue:    append([]payloadItem(nil), j.spec.Payload...),
	}
	if j.spec.AuthSession != nil {
		jr.authID = j.spec.AuthSession.ID
	}
	jr.ctx, jr.cancel = context.WithCancel(s.baseCtx)
	j.runs = append(j.runs, jr)
	s.log.Info("job run started", "job", j.spec.ID, "jobRun", jr.id, "type", typ, "payloads", jr.payloads)
	if j.state == StatePaused {
		s.setRunPausedLocked(jr, true)
	}
	s.pumpLocked(jr)
	return jr
}

func (jr *jobRun) active() bool {
	return !intunedTerminal(jr.status)
}

func (s *Server) setRunPausedLocked(jr *jobRun, paused bool) {
	if !jr.active() || jr.paused == paused {
		return
	}
	jr.paused = paused
	jr.updated = s.clock.Now()
	if paused {
		jr.status = JobRunPaused
		jr.reason = &jobRunReason{Type: "user-request", Message: "Job run was paused during execution due to an explicit user request"}
	} else {
		jr.status = JobRunPending
		jr.reason = nil
		s.pumpLocked(jr)
	}
}

// pumpLocked starts queued payloads up to maxConcurrentRequests and
// finishes the JobRun when nothing is queued or executing.
func (s *Server) pumpLocked(jr *jobRun) {
	if !jr.active() || jr.paused || s.closed {
		return
	}
	for len(jr.queue) > 0 && jr.inflight < jr.maxConc && !s.closed {
		item := jr.queue[0]
		jr.queue = jr.queue[1:]
		jr.inflight++
		s.busyAdd(1)
		go s.execute(jr, item, s.ids.nanoid())
	}
	if len(jr.queue) == 0 && jr.inflight == 0 {
		now := s.clock.Now()
		jr.end, jr.updated = &now, now
		jr.status = JobRunCompleted
		if jr.payloads > 0 && jr.succeeded == 0 {
			// The SDK's JobRun error codes are only internal-server-error
			// and insufficient-resource-credits; a run whose every
			// payload failed reports the first (a simulator choice: what
			// Intuned reports here is not documented).
			jr.status = JobRunFailure
			jr.err = &jobRunError{Code: "internal-server-error", Category: "infrastructure",
				Message: fmt.Sprintf("all %d payloads failed", jr.payloads), CorrelationID: s.ids.uuid()}
		}
		jr.job.lastRunTime = &now
		s.log.Info("job run finished", "job", jr.job.spec.ID, "jobRun", jr.id, "status", jr.status,
			"payloads", jr.payloads, "successful", jr.succeeded, "failed", jr.failed)
	}
}

// execute runs one payload item with its handler, retrying failed attempts
// up to the payload's (else the job's, else 3) maximumAttempts, then records
// the result, appends extended payloads and delivers to the sink.
func (s *Server) execute(jr *jobRun, item payloadItem, runID string) {
	defer s.busyAdd(-1)
	s.mu.Lock()
	h := s.handlers[item.APIName]
	j := jr.job
	s.mu.Unlock()

	attempts := defaultMaximumAttempts
	if r := j.spec.Configuration.Retry; r != nil && r.MaximumAttempts != nil {
		attempts = *r.MaximumAttempts
	}
	if item.Retry != nil && item.Retry.MaximumAttempts != nil {
		attempts = *item.Retry.MaximumAttempts
	}
	timeout := time.Duration(defaultRequestTimeout) * time.Second
	if item.RequestTimeout != nil {
		timeout = time.Duration(*item.RequestTimeout) * time.Second
	}
	run := &APIRun{RunID: runID, JobRunID: jr.id, APIName: item.APIName, Parameters: item.Parameters, StartedAt: s.clock.Now()}
	rc := RunContext{
		WorkspaceID: j.ws, Project: j.project, JobID: j.spec.ID, JobRunID: jr.id,
		RunID: runID, APIName: item.APIName, Parameters: item.Parameters,
	}
	var res RunResult
	for attempt := 1; attempt <= attempts; attempt++ {
		rc.Attempt = attempt
		run.Attempts = attempt
		if h == nil {
			res = RunResult{Error: &RunError{Code: "script-execution-exception",
				Message: fmt.Sprintf("API %q does not exist in project %s", item.APIName, j.project), StatusCode: 404}}
			break
		}
		res = callHandler(h, jr.ctx, rc)
		d := res.Duration
		if d > timeout {
			d = timeout
			res = RunResult{Error: &RunError{Code: "script-timeout", Message: fmt.Sprintf("API run exceeded requestTimeout of %s", timeout), StatusCode: 504}}
		}
		if err := s.sleep(jr.ctx, d); err != nil {
			break // terminated or shutting down
		}
		if res.Error == nil {
			break
		}
	}
	if res.Error == nil {
		if b, err := json.Marshal(res.Result); err != nil {
			res.Error = &RunError{Code: "script-no-valid-output-received", Message: "result is not JSON-serialisable: " + err.Error()}
		} else {
			run.Result = b
		}
	}
	run.EndedAt = s.clock.Now()
	if res.Error != nil {
		run.Status = "failed"
		if res.Error.StatusCode == 0 {
			res.Error.StatusCode = 500
		}
		run.Error = res.Error
		run.Result = nil
	} else {
		run.Status = "completed"
	}

	s.mu.Lock()
	jr.inflight--
	if jr.status == JobRunTerminated || jr.ctx.Err() != nil {
		s.mu.Unlock()
		return // dropped: terminated runs neither count nor deliver
	}
	jr.apiRuns = append(jr.apiRuns, run)
	if run.Status == "completed" {
		jr.succeeded++
		for _, ext := range res.Extend {
			params, err := json.Marshal(ext.Parameters)
			if err != nil || !isJSONObject(params) {
				params = json.RawMessage(`{}`)
			}
			jr.queue = append(jr.queue, payloadItem{APIName: ext.API, Parameters: params,
				RequestTimeout: j.spec.Configuration.RequestTimeout, Retry: j.spec.Configuration.Retry})
			jr.payloads++
		}
	} else {
		jr.failed++
	}
	jr.updated = s.clock.Now()
	d := s.newDeliveryLocked(jr, run)
	s.pumpLocked(jr)
	s.mu.Unlock()
	if d != nil {
		s.attempt(d)
	}
}

func (s *Server) lookupRunLocked(c *reqCtx) (*jobRun, *apiError) {
	j, apiErr := s.lookupLocked(c)
	if apiErr != nil {
		return nil, apiErr
	}
	id := c.r.PathValue("jobRunId")
	for _, jr := range j.runs {
		if jr.id == id {
			return jr, nil
		}
	}
	return nil, notFound("Job run " + id + " not found for job " + j.spec.ID)
}

func (s *Server) getRun(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jr, apiErr := s.lookupRunLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	env := jobRunEnvelope{JobRun: jr.wire()}
	if !jr.active() {
		env.Results = s.resultsLocked(jr, c)
	}
	return http.StatusOK, env, nil
}

// terminateRun stops a JobRun: queued payloads are dropped and executing
// Runs are cancelled (they are neither counted nor delivered). Terminating a
// finished JobRun is a no-op that answers 200.
func (s *Server) terminateRun(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jr, apiErr := s.lookupRunLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	if jr.active() {
		now := s.clock.Now()
		jr.status = JobRunTerminated
		jr.reason = &jobRunReason{Type: "terminated", Message: "Job run was terminated by user request"}
		jr.queue = nil
		jr.end, jr.updated = &now, now
		jr.cancel()
		s.log.Info("job run terminated", "job", jr.job.spec.ID, "jobRun", jr.id)
	}
	return http.StatusOK, messageOnly{Message: "Job run terminated"}, nil
}

// callHandler runs h, turning a panic into a failed Run.
func callHandler(h APIHandler, ctx context.Context, rc RunContext) (res RunResult) {
	defer func() {
		if p := recover(); p != nil {
			res = RunResult{Error: &RunError{Code: "script-process-crashed", Message: fmt.Sprint("handler panicked: ", p)}}
		}
	}()
	return h(ctx, rc)
}

// Sortable JobRun fields for sortBy, mapped to comparison functions.
var runSortFields = map[string]func(a, b *jobRun) int{
	"id":         func(a, b *jobRun) int { return strings.Compare(a.id, b.id) },
	"start_time": func(a, b *jobRun) int { return a.start.Compare(*b.start) },
	"created_at": func(a, b *jobRun) int { return a.created.Compare(b.created) },
	"updated_at": func(a, b *jobRun) int { return a.updated.Compare(b.updated) },
	"end_time": func(a, b *jobRun) int {
		switch {
		case a.end == nil && b.end == nil:
			return 0
		case a.end == nil:
			return 1
		case b.end == nil:
			return -1
		}
		return a.end.Compare(*b.end)
	},
	"status":          func(a, b *jobRun) int { return strings.Compare(a.status, b.status) },
	"type":            func(a, b *jobRun) int { return strings.Compare(a.typ, b.typ) },
	"payloads":        func(a, b *jobRun) int { return a.payloads - b.payloads },
	"successful_runs": func(a, b *jobRun) int { return a.succeeded - b.succeeded },
	"failed_runs":     func(a, b *jobRun) int { return a.failed - b.failed },
}

const (
	defaultPageSize = 20
	maxPageSize     = 100
)

// listRuns serves Get Job Runs: pageSize (default 20, max 100), pageNumber
// (0-based) and sortBy ("field,dir/field,dir"; default "start_time,desc").
func (s *Server) listRuns(c *reqCtx) (int, any, *apiError) {
	q := c.r.URL.Query()
	pageSize, err := queryInt(q.Get("pageSize"), defaultPageSize)
	if err != nil || pageSize < 1 || pageSize > maxPageSize {
		return 0, nil, badRequest(fmt.Sprintf("pageSize must be an integer between 1 and %d", maxPageSize), fieldError{"pageSize", "invalid"})
	}
	pageNumber, err := queryInt(q.Get("pageNumber"), 0)
	if err != nil || pageNumber < 0 {
		return 0, nil, badRequest("pageNumber must be an integer >= 0 (pages are 0-based)", fieldError{"pageNumber", "invalid"})
	}
	less, apiErr := parseSortBy(q.Get("sortBy"))
	if apiErr != nil {
		return 0, nil, apiErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j, apiErr := s.lookupLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	runs := append([]*jobRun(nil), j.runs...)
	sort.SliceStable(runs, func(a, b int) bool { return less(runs[a], runs[b]) })
	page := jobRunsPage{JobRuns: []jobRunWire{}, TotalCount: len(runs)}
	for i := pageNumber * pageSize; i < len(runs) && i < (pageNumber+1)*pageSize; i++ {
		page.JobRuns = append(page.JobRuns, runs[i].wire())
	}
	return http.StatusOK, page, nil
}

func queryInt(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	return strconv.Atoi(v)
}

func parseSortBy(v string) (func(a, b *jobRun) bool, *apiError) {
	if v == "" {
		v = "start_time,desc"
	}
	type key struct {
		cmp  func(a, b *jobRun) int
		desc bool
	}
	var keys []key
	for _, part := range strings.Split(v, "/") {
		field, dir, _ := strings.Cut(strings.TrimSpace(part), ",")
		cmp := runSortFields[field]
		if cmp == nil {
			return nil, badRequest(fmt.Sprintf("sortBy: unknown field %q (want one of %s)", field, strings.Join(sortedKeys(runSortFields), ", ")), fieldError{"sortBy", "invalid"})
		}
		switch strings.ToLower(dir) {
		case "", "asc":
			keys = append(keys, key{cmp, false})
		case "desc":
			keys = append(keys, key{cmp, true})
		default:
			return nil, badRequest(fmt.Sprintf("sortBy: direction %q must be asc or desc", dir), fieldError{"sortBy", "invalid"})
		}
	}
	return func(a, b *jobRun) bool {
		for _, k := range keys {
			c := k.cmp(a, b)
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	}, nil
}

func (jr *jobRun) wire() jobRunWire {
	return jobRunWire{
		ID:                       jr.id,
		StartTime:                stampPtr(jr.job.dateFormat, jr.start),
		EndTime:                  stampPtr(jr.job.dateFormat, jr.end),
		WorkspaceID:              jr.job.ws,
		ProjectID:                jr.job.projectID,
		JobID:                    jr.job.spec.ID,
		CreatedAt:                stamp(jr.job.dateFormat, jr.created),
		UpdatedAt:                stamp(jr.job.dateFormat, jr.updated),
		Type:                     jr.typ,
		Status:                   jr.status,
		Payloads:                 jr.payloads,
		SuccessfulRuns:           jr.succeeded,
		FailedRuns:               jr.failed,
		Reason:                   jr.reason,
		Error:                    jr.err,
		JobConfigurationSnapshot: jr.snapshot,
	}
}

// JobRunState overrides a JobRun's status, reason and error, so tests can see
// every status and reason the SDK knows (the simulator's own lifecycle only
// reaches PENDING, PAUSED, COMPLETED, FAILURE and TERMINATED). Values must
// be in JobRunStatuses, JobRunReasonTypes, JobRunErrorCodes and
// JobRunErrorCategories. A terminal status ends the JobRun: queued payloads
// are dropped.
type JobRunState struct {
	Status string `json:"status"`
	Reason *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"reason,omitempty"`
	Error *struct {
		Code     string `json:"code"`
		Category string `json:"category"`
		Message  string `json:"message"`
	} `json:"error,omitempty"`
}

// SetJobRunState applies st to the JobRun with id jobRunID.
func (s *Server) SetJobRunState(jobRunID string, st JobRunState) error {
	bad := func(what, v string, set []string) error {
		return fmt.Errorf("%s %q is not one the SDK knows (%s)", what, v, strings.Join(set, ", "))
	}
	if !slices.Contains(JobRunStatuses, st.Status) {
		return bad("status", st.Status, JobRunStatuses)
	}
	if st.Reason != nil && !slices.Contains(JobRunReasonTypes, st.Reason.Type) {
		return bad("reason type", st.Reason.Type, JobRunReasonTypes)
	}
	if e := st.Error; e != nil && (!slices.Contains(JobRunErrorCodes, e.Code) || !slices.Contains(JobRunErrorCategories, e.Category)) {
		return fmt.Errorf("error code %q / category %q: want one of %s / %s", e.Code, e.Category, strings.Join(JobRunErrorCodes, ", "), strings.Join(JobRunErrorCategories, ", "))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	jr := s.jobRunLocked(jobRunID)
	if jr == nil {
		return fmt.Errorf("%w: no JobRun %s", ErrJobNotFound, jobRunID)
	}
	now := s.clock.Now()
	jr.status, jr.updated, jr.reason, jr.err = st.Status, now, nil, nil
	if st.Reason != nil {
		jr.reason = &jobRunReason{Type: st.Reason.Type, Message: st.Reason.Message}
	}
	if e := st.Error; e != nil {
		jr.err = &jobRunError{Code: e.Code, Category: e.Category, Message: e.Message, CorrelationID: s.ids.uuid()}
	}
	if intunedTerminal(st.Status) {
		jr.queue = nil
		jr.end = &now
		jr.job.lastRunTime = &now // as when a run finishes by itself
		jr.cancel()
	}
	return nil
}

func intunedTerminal(status string) bool {
	switch status {
	case "SUCCESS", "FAILURE", "COMPLETED", "TERMINATED", "CANCELED":
		return true
	}
	return false
}
