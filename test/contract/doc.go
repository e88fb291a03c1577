// Package contract holds the contract suite between the operator's Intuned
// client (internal/intuned) and the local Intuned simulator
// (internal/intunedsim). The two were written independently from
// shared/intuned-api.md; these tests run the real client against the
// simulator over real HTTP, so a disagreement on any wire name, shape,
// status or retry rule fails here. The package has no non-test code.
package contract
