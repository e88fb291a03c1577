package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// RealisticDelivery is delivery i of a store that holds JobRuns of 100 Runs: a sink body shaped
// like the guide's "details" example (docs/intuned-api.md), whose result lists scraped products
// until the body is about size bytes, with a random 21-character runId and UUID-like JobRun ids
// as Intuned sends them. Retention's sizing guidance is measured with it.
func RealisticDelivery(r *rand.Rand, i, size int, at time.Time) store.Delivery {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	id := make([]byte, 21)
	for k := range id {
		id[k] = alphabet[r.IntN(len(alphabet))]
	}
	runID := string(id)
	jobRun := fmt.Sprintf("%08x-5c6b-413e-995a-%012x", i/100, i/100)
	var products []string
	for n := 0; n == 0 || 400+len(strings.Join(products, ",")) < size; n++ {
		p := r.IntN(100000)
		products = append(products, fmt.Sprintf(`{"id":"prod-%d","name":"Product %d with a longer name","price":"$%d.%02d","url":"https://www.scrapingcourse.com/ecommerce/product/item-%d/"}`,
			p, p, r.IntN(500), r.IntN(100), p))
	}
	body := fmt.Sprintf(`{"workspaceId":"e95cb8d1-f212-4c04-ace1-c0f77e8708c7","apiInfo":{"name":"details","runId":%q,`+
		`"parameters":{"detailsUrl":"https://www.scrapingcourse.com/ecommerce/product/abominable-hoodie/","name":"Abominable Hoodie"},`+
		`"result":{"status":"completed","result":[%s],"statusCode":200}},"project":{"id":"482bf507-5fcc-43ed-9443-d8fff86015c4",`+
		`"name":"ecommerce-scraper-quickstart"},"projectJob":{"id":"default-with-webhook"},"projectJobRun":{"id":%q}}`,
		runID, strings.Join(products, ","), jobRun)
	return store.Delivery{RunID: runID, JobID: "default-with-webhook", JobRunID: jobRun, Project: "ecommerce-scraper-quickstart",
		APIName: "details", ResultStatus: "completed", ReceivedAt: at, Body: []byte(body)}
}

// FillRealistic stores n RealisticDelivery deliveries (from, from+1, ...) of about size bytes in
// batches of 200, received one millisecond apart from at, and returns the bytes of their bodies.
func FillRealistic(tb testing.TB, s store.Store, r *rand.Rand, from, n, size int, at time.Time) int64 {
	var bodies int64
	batch := make([]store.Delivery, 0, 200)
	for i := from; i < from+n; i++ {
		d := RealisticDelivery(r, i, size, at.Add(time.Duration(i)*time.Millisecond))
		bodies += int64(len(d.Body))
		if batch = append(batch, d); len(batch) == cap(batch) || i == from+n-1 {
			if _, err := s.Save(context.Background(), batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return bodies
}

// BytesPerDeliverySizes are the body sizes the stores' BenchmarkBytesPerDelivery measure, with
// how many deliveries each stores.
var BytesPerDeliverySizes = []struct {
	Name     string
	Bytes, N int
}{{"guide-example-900B", 900, 20000}, {"2KiB", 2048, 20000}, {"8KiB", 8192, 20000}, {"64KiB", 65536, 3000}}
