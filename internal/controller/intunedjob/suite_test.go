package intunedjob

import (
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"
)

// TestMain runs the package's tests against one API server (envtest).
func TestMain(m *testing.M) { controllertest.Main(m) }
