package intuned

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// comparable returns desired and observed in the generic form SameSpec
// compares: Intuned's documented defaults applied, nulls dropped, and the
// webhook sink's retry/timeout (from the webhook guide, not in the SDK's
// response schema) ignored when the observed sink lacks them.
func comparable(desired, observed UpdateJobRequest) (dv, ov any, err error) {
	d, o := WithDefaults(desired), WithDefaults(observed)
	if dw, ow := webhook(d), webhook(o); dw != nil && ow != nil {
		if ow.Retry == nil {
			dw.Retry = nil
		}
		if ow.Timeout == nil {
			dw.Timeout = nil
		}
	}
	if dv, err = genericJSON(d); err != nil {
		return nil, nil, err
	}
	if ov, err = genericJSON(o); err != nil {
		return nil, nil, err
	}
	return dv, ov, nil
}

// SpecDiff lists the JSON paths (e.g. "configuration.requestTimeout",
// "schedule.calendars[0].minute") where the observed Job differs from the
// desired one, by the rules of SameSpec. It names fields, never values, so
// it is safe to show in status: values may be secret (headers, S3 keys).
func SpecDiff(desired, observed UpdateJobRequest) []string {
	dv, ov, err := comparable(desired, observed)
	if err != nil {
		return []string{"(not encodable: " + err.Error() + ")"}
	}
	var paths []string
	diffPaths("", dv, ov, &paths)
	return paths
}

func diffPaths(path string, a, b any, out *[]string) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := k
			if path != "" {
				p = path + "." + k
			}
			// headers and parameters are free-form: report the object, not
			// its keys (a header name may be as private as its value).
			if k == "headers" || k == "parameters" {
				if !reflect.DeepEqual(am[k], bm[k]) {
					*out = append(*out, p)
				}
				continue
			}
			diffPaths(p, am[k], bm[k], out)
		}
		return
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		for i := range al {
			diffPaths(path+"["+strconv.Itoa(i)+"]", al[i], bl[i], out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, path)
	}
}

// SpecDigest identifies a Job spec in the form SameSpec compares (defaults
// applied, nulls dropped, keys sorted) without revealing it: an HMAC-SHA256
// keyed with key (the operator uses the workspace's API key, which is never
// stored beside the digest), so secrets inside the spec (webhook headers,
// S3 keys, proxy passwords) cannot be guessed from it. 32 hex characters.
func SpecDigest(key string, s UpdateJobRequest) string {
	s = WithDefaults(s)
	g, err := genericJSON(s)
	if err != nil {
		return "unencodable"
	}
	b, err := json.Marshal(g) // map keys are sorted: a canonical form
	if err != nil {
		return "unencodable"
	}
	m := hmac.New(sha256.New, []byte(key))
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// FormatPaths joins paths for a message, at most max of them.
func FormatPaths(paths []string, max int) string {
	if len(paths) <= max {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:max], ", "), len(paths)-max)
}
