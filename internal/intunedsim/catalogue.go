package intunedsim

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"
)

// RunContext describes the API Run a handler executes.
type RunContext struct {
	WorkspaceID string
	Project     string
	JobID       string
	JobRunID    string
	RunID       string
	APIName     string
	Parameters  json.RawMessage // the payload item's parameters (a JSON object)
	Attempt     int             // 1-based; failed attempts are retried up to maximumAttempts
}

// RunResult is what a handler returns. A nil Error means the Run completed
// with Result (any JSON-marshalable value).
type RunResult struct {
	Result any
	Error  *RunError
	// Extend appends payloads to the current JobRun (Intuned's
	// extendPayload); only honoured when the Run completes.
	Extend []ExtendPayload
	// Duration is how long the attempt takes in simulated time. A Duration
	// above the payload's requestTimeout fails the attempt with script-timeout.
	Duration time.Duration
}

// RunError is a failed Run: Code becomes the sink body's "error", Message its
// "message" and StatusCode its "statusCode" (default 500).
type RunError struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	StatusCode int    `json:"statusCode"`
}

// ExtendPayload is one payload appended by a Run (wire key "api", not "apiName").
type ExtendPayload struct {
	API        string `json:"api"`
	Parameters any    `json:"parameters"`
}

// APIHandler executes one attempt of an API Run. It must honour ctx
// (cancelled when the JobRun is terminated or the server closes).
type APIHandler func(ctx context.Context, rc RunContext) RunResult

// CatalogueOptions configure the default catalogue, modelled on the seed
// guide's ecommerce-scraper-quickstart project.
type CatalogueOptions struct {
	// Products is how many products `list` returns (default 5; negative = 0).
	Products int
	// FailureShare is the share of `details` Runs that fail (0..1). Exactly
	// round(FailureShare*Products) products, chosen by the seed, fail on every
	// attempt; `list` never fails.
	FailureShare float64
	// RunDuration is the simulated duration of each Run (default 0).
	RunDuration time.Duration
}

// Product is what `details` returns and what `list` lists.
type Product struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Price      string `json:"price"`
	DetailsURL string `json:"detailsUrl"`
}

// Catalogue is the default handler set: `list` returns the product list and
// extends the JobRun with one `details` payload {detailsUrl, name} per
// product; `details` returns that product's object.
type Catalogue struct {
	opts CatalogueOptions
	// runDuration is opts.RunDuration, changeable while Runs go on
	// (SetRunDuration).
	runDuration atomic.Int64
	products    []Product
	byURL       map[string]int
	failing     map[int]bool
}

var productNames = []string{"Abominable Hoodie", "Adrienne Trek Jacket", "Aeon Capri", "Aero Daily Fitness Tee",
	"Aether Gym Pant", "Affirm Water Bottle", "Aim Analog Watch", "Ajax Full-Zip Sweatshirt", "Ana Running Short",
	"Angel Light Running Short", "Antonia Racer Tank", "Apollo Running Short"}

// NewCatalogue builds the default catalogue; seed picks the failing products.
func NewCatalogue(opts CatalogueOptions, seed uint64) *Catalogue {
	n := opts.Products
	if n == 0 {
		n = 5
	}
	n = max(n, 0)
	c := &Catalogue{opts: opts, byURL: map[string]int{}, failing: map[int]bool{}}
	c.runDuration.Store(int64(opts.RunDuration))
	for i := 0; i < n; i++ {
		name := productNames[i%len(productNames)]
		if i >= len(productNames) {
			name = fmt.Sprintf("%s %d", name, i/len(productNames)+1)
		}
		slug := strings.ToLower(strings.NewReplacer(" ", "-").Replace(name))
		p := Product{
			ID:         fmt.Sprintf("prod-%d", i+1),
			Name:       name,
			Price:      fmt.Sprintf("$%d.%02d", 20+(i*37)%180, (i*53)%100),
			DetailsURL: "https://www.scrapingcourse.com/ecommerce/product/" + slug + "/",
		}
		c.byURL[p.DetailsURL] = i
		c.products = append(c.products, p)
	}
	if seed == 0 {
		seed = 1
	}
	share := math.Min(math.Max(opts.FailureShare, 0), 1)
	fails := int(math.Round(share * float64(n)))
	perm := rand.New(rand.NewPCG(seed, 42)).Perm(n)
	for _, i := range perm[:fails] {
		c.failing[i] = true
	}
	return c
}

// SetRunDuration changes the simulated duration of the Runs that start from
// now on (a test that must act in the middle of a JobRun makes it longer).
func (c *Catalogue) SetRunDuration(d time.Duration) { c.runDuration.Store(int64(d)) }

// RunDuration is the simulated duration of each Run.
func (c *Catalogue) RunDuration() time.Duration { return time.Duration(c.runDuration.Load()) }

// Products returns the catalogue's products in list order.
func (c *Catalogue) Products() []Product { return append([]Product(nil), c.products...) }

// Fails reports whether `details` fails for the product at index i.
func (c *Catalogue) Fails(i int) bool { return c.failing[i] }

// List is the `list` API.
func (c *Catalogue) List(ctx context.Context, rc RunContext) RunResult {
	type listed struct {
		Name       string `json:"name"`
		DetailsURL string `json:"detailsUrl"`
	}
	out := make([]listed, 0, len(c.products))
	res := RunResult{Duration: c.RunDuration()}
	for _, p := range c.products {
		out = append(out, listed{p.Name, p.DetailsURL})
		res.Extend = append(res.Extend, ExtendPayload{API: "details", Parameters: map[string]string{"detailsUrl": p.DetailsURL, "name": p.Name}})
	}
	res.Result = out
	return res
}

// Details is the `details` API: parameters {detailsUrl, name}.
func (c *Catalogue) Details(ctx context.Context, rc RunContext) RunResult {
	var params struct {
		DetailsURL string `json:"detailsUrl"`
		Name       string `json:"name"`
	}
	_ = json.Unmarshal(rc.Parameters, &params)
	res := RunResult{Duration: c.RunDuration()}
	i, ok := c.byURL[params.DetailsURL]
	if !ok {
		if params.DetailsURL == "" {
			res.Error = &RunError{Code: "script-execution-exception", Message: "parameter detailsUrl is required", StatusCode: 400}
			return res
		}
		// An unknown product still scrapes: synthesise it from the parameters.
		res.Result = Product{ID: "prod-" + params.Name, Name: params.Name, Price: "$0.00", DetailsURL: params.DetailsURL}
		return res
	}
	if c.failing[i] {
		res.Error = &RunError{Code: "script-execution-exception",
			Message: "Timeout 30000ms exceeded waiting for selector \".product_title\"", StatusCode: 500}
		return res
	}
	res.Result = c.products[i]
	return res
}
