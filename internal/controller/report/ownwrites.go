package report

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// OwnWrites keeps a reconciler from acting on an object its own last write
// has already superseded. The informer cache delivers a write a moment
// after the API server took it; a reconcile of the same object that starts
// in between (another event queued it while the first one ran) reads the
// object as it was before. For an IntunedJob that is a job not yet created,
// so the reconcile finds the Job it had just created and claims it again: a
// second Created Event and needless calls to Intuned. Resource versions are
// opaque, so "behind" is equality with the version a reconcile read before
// it wrote. The zero value is ready to use.
type OwnWrites struct {
	mu         sync.Mutex
	superseded map[types.UID]string
}

// Behind reports whether obj, as read from the cache, is the version a
// reconcile of this process read and then overwrote. Once the cache has
// moved on, the record is dropped.
func (w *OwnWrites) Behind(obj client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	read, ok := w.superseded[obj.GetUID()]
	if !ok {
		return false
	}
	if read == obj.GetResourceVersion() {
		return true
	}
	delete(w.superseded, obj.GetUID())
	return false
}

// Wrote records that a reconcile which read obj at readVersion left it at
// obj's current version (the writes refresh obj from the API server's
// answer). Nothing is recorded when it wrote nothing.
func (w *OwnWrites) Wrote(obj client.Object, readVersion string) {
	if obj.GetResourceVersion() == readVersion || readVersion == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.superseded == nil {
		w.superseded = map[types.UID]string{}
	}
	w.superseded[obj.GetUID()] = readVersion
}
