package intunedsim

import (
	"crypto/sha1"
	"fmt"
	"math/rand/v2"
	"sync"
)

// idGen produces UUIDs (JobRun ids, correlation ids) and nanoid-style Run
// ids. With a seed it is deterministic (for golden tests); the default seed
// comes from the wall clock.
type idGen struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newIDGen(seed uint64) *idGen {
	return &idGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *idGen) uuid() string {
	g.mu.Lock()
	a, b := g.rng.Uint64(), g.rng.Uint64()
	g.mu.Unlock()
	var u [16]byte
	for i := 0; i < 8; i++ {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	u[6] = (u[6] & 0x0f) | 0x40 // version 4
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return formatUUID(u)
}

const nanoAlphabet = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"

// nanoid returns a 21-character id from nanoid's URL-safe alphabet.
func (g *idGen) nanoid() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := make([]byte, 21)
	for i := range b {
		b[i] = nanoAlphabet[g.rng.IntN(len(nanoAlphabet))]
	}
	return string(b)
}

// float returns a pseudo-random number in [0,1).
func (g *idGen) float() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rng.Float64()
}

// nameUUID derives a stable UUID from a name (used for project ids, so the
// same project name always has the same id).
func nameUUID(name string) string {
	h := sha1.Sum([]byte("intuned-sim/" + name))
	var u [16]byte
	copy(u[:], h[:16])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
