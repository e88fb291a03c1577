package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Reasons a body is rejected; they are the `reason` label of the rejected metric, the quarantine
// table's reason column and the error code in the 400 response.
const (
	reasonInvalidJSON = "invalid_json"
	reasonNotSinkBody = "not_sink_body"
)

// maxIDLen bounds identifiers that become indexed columns; real ones are UUIDs, nanoids and slugs.
const maxIDLen = 256

// sinkMeta holds the fields of an Intuned sink body (intuned-api.md §7) that become columns.
type sinkMeta struct {
	RunID, JobID, JobRunID, Project, APIName, ResultStatus string
}

// bodyError says why a body is not a sink body. Its message is safe to return to the sender.
type bodyError struct {
	reason string
	msg    string
}

func (e *bodyError) Error() string { return e.msg }

// sinkBody mirrors the sink body. Objects are pointers to tell "absent" from "present"; strings are
// values because absent, null and "" all mean missing. Fields we do not index (parameters, result
// payload, authSession...) are not decoded: the raw body is stored as is.
type sinkBody struct {
	WorkspaceID   string      `json:"workspaceId"`
	Project       *nameObject `json:"project"`
	ProjectJob    *idObject   `json:"projectJob"`
	ProjectJobRun *idObject   `json:"projectJobRun"`
	APIInfo       *apiInfo    `json:"apiInfo"`
}

type apiInfo struct {
	Name   string        `json:"name"`
	RunID  string        `json:"runId"`
	Result *statusObject `json:"result"`
}

// The nested objects of which we read one string field.
type (
	idObject struct {
		ID string `json:"id"`
	}
	nameObject struct {
		Name string `json:"name"`
	}
	statusObject struct {
		Status string `json:"status"`
	}
)

// parseSinkBody checks that body is one JSON object shaped like a sink body and extracts its columns.
func parseSinkBody(body []byte) (sinkMeta, error) {
	var b sinkBody
	if !decodeSinkBodyFast(body, &b) {
		b = sinkBody{}
		if err := json.Unmarshal(body, &b); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				field := typeErr.Field
				if field == "" {
					return sinkMeta{}, &bodyError{reasonNotSinkBody, "body must be a JSON object (an Intuned sink body)"}
				}
				return sinkMeta{}, &bodyError{reasonNotSinkBody, fmt.Sprintf("field %s has the wrong type (%s)", field, typeErr.Value)}
			}
			return sinkMeta{}, &bodyError{reasonInvalidJSON, "body is not valid JSON: " + err.Error()}
		}
	}
	var missing []string
	need := func(name string, v string) string {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
			return ""
		}
		return v
	}
	m := sinkMeta{}
	need("workspaceId", b.WorkspaceID)
	if b.Project == nil {
		missing = append(missing, "project.name")
	} else {
		m.Project = need("project.name", b.Project.Name)
	}
	if b.APIInfo == nil {
		missing = append(missing, "apiInfo.name", "apiInfo.runId", "apiInfo.result.status")
	} else {
		m.APIName = need("apiInfo.name", b.APIInfo.Name)
		m.RunID = need("apiInfo.runId", b.APIInfo.RunID)
		if b.APIInfo.Result == nil {
			missing = append(missing, "apiInfo.result.status")
		} else {
			m.ResultStatus = need("apiInfo.result.status", b.APIInfo.Result.Status)
		}
	}
	// projectJob/projectJobRun are absent for Run-API deliveries, but when present carry an id.
	if b.ProjectJob != nil {
		m.JobID = need("projectJob.id", b.ProjectJob.ID)
	}
	if b.ProjectJobRun != nil {
		m.JobRunID = need("projectJobRun.id", b.ProjectJobRun.ID)
	}
	if len(missing) > 0 {
		return sinkMeta{}, &bodyError{reasonNotSinkBody, "not an Intuned sink body: missing or empty " + strings.Join(missing, ", ")}
	}
	if m.ResultStatus != "completed" && m.ResultStatus != "failed" {
		return sinkMeta{}, &bodyError{reasonNotSinkBody, fmt.Sprintf("apiInfo.result.status must be \"completed\" or \"failed\", got %q", m.ResultStatus)}
	}
	for _, f := range []struct{ name, v string }{
		{"apiInfo.runId", m.RunID}, {"projectJob.id", m.JobID}, {"projectJobRun.id", m.JobRunID},
		{"project.name", m.Project}, {"apiInfo.name", m.APIName},
	} {
		if len(f.v) > maxIDLen {
			return sinkMeta{}, &bodyError{reasonNotSinkBody, fmt.Sprintf("%s is longer than %d bytes", f.name, maxIDLen)}
		}
		// Control characters (NUL above all: PostgreSQL text cannot hold it) never occur in real ids.
		if strings.IndexFunc(f.v, unicode.IsControl) >= 0 {
			return sinkMeta{}, &bodyError{reasonNotSinkBody, f.name + " contains control characters"}
		}
	}
	return m, nil
}
