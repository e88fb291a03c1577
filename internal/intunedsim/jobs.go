package intunedsim

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"
)

// Job states as Intuned reports them.
const (
	StateActive = "ACTIVE"
	StatePaused = "PAUSED"
)

// job is one stored Intuned Job.
type job struct {
	ws, project, projectID string
	spec                   jobSpec // validated, defaults filled; ID set
	sched                  *compiledSchedule
	state                  string
	reason                 *jobReason
	createdAt              time.Time
	lastRunTime            *time.Time
	nextRunTime            *time.Time
	scheduleID             *string
	// origin is "API" (created through the API) or "CODE" (defined in the
	// project's job files). Not in any response: the SDK's schemas lack it.
	origin     string
	timer      Timer
	timerGen   int
	runs       []*jobRun // in creation order
	dateFormat string    // Options.DateFormat when created
}

func (s *Server) jobsOf(ws, project string) map[string]*job {
	k := projKey{ws, project}
	m := s.jobs[k]
	if m == nil {
		m = map[string]*job{}
		s.jobs[k] = m
	}
	return m
}

// lookupLocked finds a job or returns a 404.
func (s *Server) lookupLocked(c *reqCtx) (*job, *apiError) {
	id := c.r.PathValue("jobId")
	j := s.jobs[projKey{c.ws, c.project}][id]
	if j == nil {
		return nil, notFound("Job " + id + " not found in project " + c.project)
	}
	return j, nil
}

func (s *Server) listJobs(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jobs := make([]*job, 0)
	for _, j := range s.jobs[projKey{c.ws, c.project}] {
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool {
		if !jobs[a].createdAt.Equal(jobs[b].createdAt) {
			return jobs[a].createdAt.Before(jobs[b].createdAt)
		}
		return jobs[a].spec.ID < jobs[b].spec.ID
	})
	out := make([]jobListItem, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j.listItem())
	}
	return http.StatusOK, out, nil
}

func (s *Server) createJob(c *reqCtx) (int, any, *apiError) {
	spec, sched, apiErr := decodeJobSpec(c.body, true)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	jobs := s.jobsOf(c.ws, c.project)
	if jobs[spec.ID] != nil {
		msg := "Job with id " + spec.ID + " already exists in project " + c.project
		if s.opts.DuplicateCreateStatus == http.StatusConflict {
			return 0, nil, conflict(msg)
		}
		return 0, nil, badRequest(msg, fieldError{"id", "already exists"})
	}
	s.normaliseLocked(spec)
	j := &job{
		ws: c.ws, project: c.project, projectID: c.projectID,
		spec: *spec, sched: sched, state: StateActive, createdAt: s.clock.Now(),
		dateFormat: s.opts.DateFormat,
	}
	jobs[spec.ID] = j
	s.armScheduleLocked(j)
	s.log.Info("job created", "workspace", c.ws, "project", c.project, "job", spec.ID)
	return http.StatusCreated, idMessage{ID: spec.ID, Message: "created"}, nil
}

func (s *Server) getJob(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, apiErr := s.lookupLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	d := j.detail()
	if s.opts.OmitDetailPayload {
		d.Payload = nil
	}
	return http.StatusOK, d, nil
}

// updateJob is a full replacement: optional fields left out of the body
// (schedule, sink, proxy, authSession) are cleared.
func (s *Server) updateJob(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	j, apiErr := s.lookupLocked(c)
	s.mu.Unlock()
	if apiErr != nil {
		return 0, nil, apiErr
	}
	spec, sched, apiErr := decodeJobSpec(c.body, false)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, apiErr = s.lookupLocked(c); apiErr != nil { // deleted meanwhile
		return 0, nil, apiErr
	}
	if apiErr := refuseCode(j, "updated"); apiErr != nil {
		return 0, nil, apiErr
	}
	s.normaliseLocked(spec)
	s.replaceSpecLocked(j, spec, sched)
	s.log.Info("job updated", "workspace", c.ws, "project", c.project, "job", j.spec.ID)
	return http.StatusOK, idMessage{ID: j.spec.ID, Message: "updated job successfully"}, nil
}

func (s *Server) replaceSpecLocked(j *job, spec *jobSpec, sched *compiledSchedule) {
	spec.ID = j.spec.ID
	j.spec = *spec
	j.sched = sched
	s.armScheduleLocked(j)
}

func (s *Server) deleteJob(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, apiErr := s.lookupLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	if apiErr := refuseCode(j, "deleted"); apiErr != nil {
		return 0, nil, apiErr
	}
	s.deleteJobLocked(j)
	return http.StatusNoContent, nil, nil
}

// deleteJobLocked removes a job and stops its schedule. Its JobRuns
// disappear with it; runs in flight finish and still deliver.
func (s *Server) deleteJobLocked(j *job) {
	s.stopScheduleLocked(j)
	delete(s.jobs[projKey{j.ws, j.project}], j.spec.ID)
	s.log.Info("job deleted", "workspace", j.ws, "project", j.project, "job", j.spec.ID)
}

// pauseJob stops schedules and pauses the job's in-flight JobRuns (they
// start no further payloads until resume; Runs already executing finish).
// Pausing a paused job is a no-op that still answers 200.
func (s *Server) pauseJob(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, apiErr := s.lookupLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	s.setPausedLocked(j, true)
	return http.StatusOK, messageOnly{Message: "Paused"}, nil
}

func (s *Server) resumeJob(c *reqCtx) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, apiErr := s.lookupLocked(c)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	s.setPausedLocked(j, false)
	return http.StatusOK, messageOnly{Message: "Resumed"}, nil
}

func (s *Server) setPausedLocked(j *job, paused bool) {
	if paused == (j.state == StatePaused) {
		return
	}
	now := s.clock.Now()
	if paused {
		j.state = StatePaused
		j.reason = &jobReason{Type: "paused", Message: "Job paused by user request", Timestamp: isoTime(now)}
	} else {
		j.state = StateActive
		j.reason = nil
	}
	s.armScheduleLocked(j)
	for _, jr := range j.runs {
		s.setRunPausedLocked(jr, paused)
	}
	s.log.Info("job state changed", "job", j.spec.ID, "state", j.state)
}

// armScheduleLocked (re)computes next_run_time and sets the timer that
// fires the next scheduled JobRun. Paused jobs have no next run.
func (s *Server) armScheduleLocked(j *job) {
	s.stopScheduleLocked(j)
	if j.sched == nil || (len(j.sched.intervals) == 0 && len(j.sched.calendars) == 0) {
		j.scheduleID = nil
		return
	}
	id := "intuned-sim-schedule-" + j.projectID[:8] + "-" + j.spec.ID
	j.scheduleID = &id
	if j.state == StatePaused || s.closed {
		return
	}
	now := s.clock.Now()
	next, ok := j.sched.next(now)
	if !ok {
		return
	}
	j.nextRunTime = &next
	gen := j.timerGen
	j.timer = s.clock.AfterFunc(next.Sub(now), func() { s.fireSchedule(j, gen, next) })
}

// StallSchedules makes scheduled runs come due without starting (on) as a
// stuck scheduler would, leaving next_run_time at the missed time, or
// restores the schedule of every job (off).
func (s *Server) StallSchedules(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schedulesStalled = on
	if on {
		return
	}
	for _, jobs := range s.jobs {
		for _, j := range jobs {
			s.armScheduleLocked(j)
		}
	}
}

// SchedulesStalled reports whether StallSchedules is on.
func (s *Server) SchedulesStalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.schedulesStalled
}

func (s *Server) stopScheduleLocked(j *job) {
	j.timerGen++
	if j.timer != nil {
		j.timer.Stop()
		j.timer = nil
	}
	j.nextRunTime = nil
}

// fireSchedule starts a SCHEDULED JobRun and arms the next one. gen guards
// against a timer that fired just as it was being replaced.
func (s *Server) fireSchedule(j *job, gen int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != j.timerGen || s.closed || s.jobs[projKey{j.ws, j.project}][j.spec.ID] != j || s.schedulesStalled {
		return
	}
	s.startJobRunLocked(j, JobRunScheduled)
	s.armScheduleLocked(j)
}

func (j *job) detail() jobDetail {
	return jobDetail{
		ID:            j.spec.ID,
		Configuration: j.spec.Configuration,
		Payload:       &j.spec.Payload,
		Schedule:      j.spec.Schedule,
		Sink:          j.spec.Sink,
		CreatedAt:     stamp(j.dateFormat, j.createdAt),
		NextRunTime:   stampPtr(j.dateFormat, j.nextRunTime),
		LastRunTime:   stampPtr(j.dateFormat, j.lastRunTime),
		State:         j.state,
		ProjectID:     j.projectID,
		AuthSession:   j.spec.AuthSession,
		Proxy:         j.spec.Proxy,
	}
}

func (j *job) listItem() jobListItem {
	return jobListItem{
		ID:            j.spec.ID,
		WorkspaceID:   j.ws,
		ProjectID:     j.projectID,
		Configuration: j.spec.Configuration,
		Payload:       j.spec.Payload,
		Sink:          j.spec.Sink,
		Schedule:      j.spec.Schedule,
		NextRunTime:   stampPtr(j.dateFormat, j.nextRunTime),
		LastRunTime:   stampPtr(j.dateFormat, j.lastRunTime),
		CreatedAt:     stamp(j.dateFormat, j.createdAt),
		AuthSession:   j.spec.AuthSession,
		Proxy:         proxyObj(j.spec.Proxy),
		Reason:        j.reason,
		State:         j.state,
		ScheduleID:    j.scheduleID,
	}
}

func proxyObj(p *string) *proxyObject {
	if p == nil {
		return nil
	}
	return &proxyObject{Version: "v1", URL: *p}
}

// specJSON renders a job's stored spec in the Create body format (used by
// drift patches).
func (j *job) specJSON() []byte {
	b, _ := json.Marshal(j.spec)
	return b
}

// OriginCode marks a Job defined in code (Intuned's jobs-as-code files).
const OriginCode = "CODE"

// refuseCode is Intuned's refusal to update or delete a Job defined in code
// (pause, resume and trigger still work). Intuned documents the refusal,
// not its status or body: the simulator answers 400 bad-request (a code
// the SDK knows) whose message and details say origin CODE.
func refuseCode(j *job, verb string) *apiError {
	if j.origin != OriginCode {
		return nil
	}
	return badRequest("Job "+j.spec.ID+" is defined in code (origin CODE) and cannot be "+verb+
		" through the API; change or remove it in the project's job files and deploy",
		fieldError{"origin", "CODE"})
}
