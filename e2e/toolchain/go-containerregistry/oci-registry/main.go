// Command oci-registry serves go-containerregistry's in-memory OCI registry
// (github.com/google/go-containerregistry/pkg/registry) on 127.0.0.1 (or --address, e.g. the real
// node's bridge address, where pods reach it), for the tests of the training container's push step.
//
// With --user and --password every request needs HTTP basic auth with exactly these
// credentials; anything else gets 401 with a Basic challenge, as a registry behind basic auth
// answers, so a wrong password is testable. It prints "listening on 127.0.0.1:PORT" once it
// accepts connections, and stops on SIGTERM or SIGINT. Everything is lost when it stops.
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func withBasicAuth(next http.Handler, user, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPassword, ok := r.BasicAuth()
		if !ok ||
			subtle.ConstantTimeCompare([]byte(gotUser), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(gotPassword), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="oci-registry"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`+"\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func run() error {
	port := flag.Int("port", 0, "TCP port (0: any free port)")
	address := flag.String("address", "127.0.0.1", "address to listen on (this host's: 127.0.0.1, or the real node's bridge)")
	user := flag.String("user", "", "require HTTP basic auth with this user name (needs --password)")
	password := flag.String("password", "", "the password of --user")
	quiet := flag.Bool("quiet", false, "do not log every request")
	flag.Parse()
	if (*user == "") != (*password == "") {
		return errors.New("--user and --password go together")
	}

	logger := log.New(os.Stderr, "oci-registry: ", log.LstdFlags)
	requestLogger := logger
	if *quiet {
		requestLogger = log.New(io.Discard, "", 0)
	}
	var handler http.Handler = registry.New(registry.Logger(requestLogger), registry.WithReferrersSupport(true))
	if *user != "" {
		handler = withBasicAuth(handler, *user, *password)
	}

	listener, err := net.Listen("tcp", net.JoinHostPort(*address, strconv.Itoa(*port)))
	if err != nil {
		return err
	}
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	fmt.Printf("listening on %s\n", listener.Addr())
	if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "oci-registry:", err)
		os.Exit(2)
	}
}
