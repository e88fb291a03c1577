// Package controller holds one reconciler per kind of intuned.io/v1alpha1.
//
// The reconcilers here are deliberately thin placeholders: they read the
// object and record observedGeneration. The IntunedJob and WebhookReceiver
// controllers replace them with the real logic; the RBAC markers in rbac.go
// describe everything those controllers need, so config/rbac/role.yaml is
// complete from day one.
package controller
