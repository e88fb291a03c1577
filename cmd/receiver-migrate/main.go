// Command receiver-migrate copies a SQLite receiver's deliveries into a
// PostgreSQL receiver's database, to move a receiver that outgrew one Pod
// to PostgreSQL storage (which scales out). docs/autoscaling.md has the
// whole procedure:
//
//	curl -H "Authorization: Bearer $READ_TOKEN" -o receiver.db http://localhost:8080/v1/backup
//	go run ./cmd/receiver-migrate --sqlite receiver.db --postgres-dsn-file dsn.txt
//
// Every delivery keeps its run id, receive time and body, in receive order;
// it is safe to run again (what is already there counts as a duplicate).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/postgres"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "receiver-migrate:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("receiver-migrate", flag.ContinueOnError)
	from := fs.String("sqlite", "", "the SQLite database to copy from: a file from GET /v1/backup (required)")
	dsnFile := fs.String("postgres-dsn-file", "", "file holding the PostgreSQL DSN to copy into (required; the receivers' schema is created when missing)")
	batch := fs.Int("batch", 500, "deliveries per transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *dsnFile == "" {
		return errors.New("--sqlite and --postgres-dsn-file are required (see --help)")
	}
	if _, err := os.Stat(*from); err != nil {
		return err // sqlite.Open would create an empty database
	}
	b, err := os.ReadFile(*dsnFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	src, err := sqlite.Open(ctx, *from)
	if err != nil {
		return fmt.Errorf("open %s: %w", *from, err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("open PostgreSQL: %w", err)
	}
	defer dst.Close()
	c, err := store.Copy(ctx, src, dst, *batch)
	fmt.Printf("stored %d, already there %d, conflicting (kept the target's, quarantined this one) %d\n", c.Stored, c.Duplicates, c.Conflicts)
	return err
}
