#!/usr/bin/env bash
# cpu-split.sh RECEIVER_BINARY PROFILE DELIVERIES: where the receiver's CPU per delivery goes, from a CPU profile
# taken under load (go run ./hack/bench-receiver -cases ceiling,sqlite -cpuprofile-case sqlite, or
# curl --debug-addr/debug/pprof/profile); DELIVERIES = deliveries answered while it was taken.
bin=$1 prof=$2 n=$3
go tool pprof -top -cum -nodecount=100000 "$bin" "$prof" 2>/dev/null | awk -v n="$n" '
function sec(v) { if (v ~ /ms$/) return substr(v,1,length(v)-2)/1000; if (v ~ /us$/) return substr(v,1,length(v)-2)/1e6; return substr(v,1,length(v)-1)+0 }
/Total samples/ { for (i=1;i<=NF;i++) if ($i=="=") total=sec($(i+1)) }
NF==6 && $5 ~ /%$/ && $2 ~ /%$/ { c[$6]=sec($4) }
END {
  u=1e6/n
  http=c["net/http.(*conn).serve"]; h=c["net/http.serverHandler.ServeHTTP"]; ing=c["github.com/intuned-operator/intuned-operator/internal/receiver.(*Receiver).ingest"]
  wr=c["github.com/intuned-operator/intuned-operator/internal/receiver.(*writer).run"]
  ins=c["database/sql.(*Stmt).ExecContext"]; com=c["database/sql.(*Tx).Commit"]; pw=c["modernc.org/libc.Xpwrite"]; fs=c["modernc.org/libc.Xfsync"]
  printf "total sampled                       %6.1f us\n", total*u
  printf "HTTP server (net/http, not handler) %6.1f us  (read request %.1f, write response %.1f)\n", (http-h)*u, c["net/http.(*conn).readRequest"]*u, c["net/http.(*response).finishRequest"]*u
  printf "ingest handler                      %6.1f us\n", ing*u
  printf "  auth                              %6.1f us\n", c["github.com/intuned-operator/intuned-operator/internal/receiver.(*tokens).check"]*u
  printf "  read body                         %6.1f us\n", c["github.com/intuned-operator/intuned-operator/internal/receiver.readBody"]*u
  printf "  decode + validate body            %6.1f us\n", c["github.com/intuned-operator/intuned-operator/internal/receiver.parseSinkBody"]*u
  printf "  hand-off to the writer (submit)   %6.1f us\n", c["github.com/intuned-operator/intuned-operator/internal/receiver.(*writer).submit"]*u
  printf "  answer                            %6.1f us\n", c["github.com/intuned-operator/intuned-operator/internal/receiver.writeIngestResponse"]*u
  printf "  deadline context                  %6.1f us\n", (c["context.WithTimeout"]+c["context.WithDeadlineCause.func3"])*u
  printf "writer goroutine                    %6.1f us\n", wr*u
  printf "  SQLite insert per row             %6.1f us\n", ins*u
  printf "  SQLite commit                     %6.1f us  (WAL pwrite %.1f, fsync %.1f)\n", com*u, pw*u, fs*u
  printf "  begin, space check, results       %6.1f us\n", (wr-ins-com)*u
  printf "runtime (scheduler, GC, timers)     %6.1f us  (GC mark %.1f, scheduler %.1f)\n", (total-http-wr)*u, c["runtime.gcBgMarkWorker"]*u, c["runtime.mcall"]*u
}'
