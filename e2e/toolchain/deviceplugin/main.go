// Command fto-device-plugin advertises fake devices of extended resources (phison.com/ai100,
// otterscale.com/vgpu, ...) to one kubelet through the device-plugin API (v1beta1), so that the
// kubelet of the e2e real node counts, allocates and checkpoints them as it does a real plugin's.
//
// It registers through the kubelet's plugin watcher (a registration socket in
// <kubelet root dir>/plugins_registry), not through /var/lib/kubelet/device-plugins/kubelet.sock,
// whose path the kubelet hard-codes: several real nodes on one machine each keep their own
// plugins. Per resource:
//
//	--resource phison.com/ai100=4   devices ai100-0 ... ai100-3
//
// Allocate answers every container with the environment variable
// FTO_DEVICES_<RESOURCE> (upper case, non-alphanumerics as "_", e.g. FTO_DEVICES_PHISON_COM_AI100)
// holding the allocated device IDs, comma-separated, in the kubelet's order; a container that gets
// --nvme-resource (phison.com/ai100) also gets its first device's NVMe swap space,
// <--nvme-host-path>/<device ID> (e.g. nvme0/ai100-2), mounted read-write at --nvme-container-path
// (/mnt/nvme0), as each aiDAPTIV card comes with its own SSD. One directory for all would let two
// trainers on the node share it, and the trainer names its swap directory after its pid, which is
// alike in two containers.
//
// GET http://127.0.0.1:<--health-port>/healthz answers 200 once the kubelet has confirmed the
// registration of every resource (503 before, and again while re-registering after the kubelet
// restarted). It stops on SIGTERM or SIGINT and removes its sockets.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type resourceFlags []string

func (r *resourceFlags) String() string     { return strings.Join(*r, ",") }
func (r *resourceFlags) Set(v string) error { *r = append(*r, v); return nil }

var nonAlnum = regexp.MustCompile(`[^A-Za-z0-9]+`)

// EnvName is the variable Allocate sets for a resource: FTO_DEVICES_PHISON_COM_AI100.
func EnvName(resource string) string {
	return "FTO_DEVICES_" + strings.ToUpper(nonAlnum.ReplaceAllString(resource, "_"))
}

// shortName names a resource's files: "phison.com/ai100" -> "ai100".
func shortName(resource string) string {
	return nonAlnum.ReplaceAllString(resource[strings.LastIndex(resource, "/")+1:], "-")
}

// plugin serves one resource: the device-plugin service on its endpoint socket and the
// plugin-watcher registration service on its registration socket.
type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	registerapi.UnimplementedRegistrationServer

	resource      string
	devices       []*pluginapi.Device
	endpoint      string // absolute path of the device-plugin socket
	registration  string // absolute path of the registration socket in plugins_registry
	registered    atomic.Bool
	servers       []*grpc.Server
	nvmeHost      string // the devices' swap spaces are its subdirectories (empty: no mount)
	nvmeContainer string
}

// mounts gives a container the swap space of the first device it was allocated.
func (p *plugin) mounts(ids []string) []*pluginapi.Mount {
	if p.nvmeHost == "" || len(ids) == 0 {
		return nil
	}
	return []*pluginapi.Mount{{ContainerPath: p.nvmeContainer, HostPath: filepath.Join(p.nvmeHost, ids[0])}}
}

func newPlugin(resource string, count int, socketDir, registryDir string) *plugin {
	short := shortName(resource)
	p := &plugin{
		resource:     resource,
		endpoint:     filepath.Join(socketDir, short+".sock"),
		registration: filepath.Join(registryDir, "fto-"+short+"-reg.sock"),
	}
	for i := 0; i < count; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("%s-%d", short, i), Health: pluginapi.Healthy})
	}
	return p
}

// Registration service (plugin watcher).

func (p *plugin) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.DevicePlugin,
		Name:              p.resource,
		Endpoint:          p.endpoint,
		SupportedVersions: []string{pluginapi.Version},
	}, nil
}

func (p *plugin) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.PluginRegistered {
		log.Printf("%s: registered with the kubelet (%d devices)", p.resource, len(p.devices))
		p.registered.Store(true)
	} else {
		log.Printf("%s: the kubelet refused the registration: %s", p.resource, s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Device-plugin service.

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done() // the devices never change: hold the stream until the kubelet drops it
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	known := map[string]bool{}
	for _, d := range p.devices {
		known[d.ID] = true
	}
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		for _, id := range c.DevicesIds {
			if !known[id] {
				return nil, status.Errorf(codes.InvalidArgument, "%s: unknown device %q", p.resource, id)
			}
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs:   map[string]string{EnvName(p.resource): strings.Join(c.DevicesIds, ",")},
			Mounts: p.mounts(c.DevicesIds),
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func serve(path string, register func(*grpc.Server)) (*grpc.Server, error) {
	_ = os.Remove(path)
	listener, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	server := grpc.NewServer()
	register(server)
	go func() { _ = server.Serve(listener) }()
	return server, nil
}

// start serves the endpoint first, then the registration socket the kubelet's watcher picks up.
func (p *plugin) start() error {
	p.registered.Store(false)
	endpoint, err := serve(p.endpoint, func(s *grpc.Server) { pluginapi.RegisterDevicePluginServer(s, p) })
	if err != nil {
		return err
	}
	registration, err := serve(p.registration, func(s *grpc.Server) { registerapi.RegisterRegistrationServer(s, p) })
	if err != nil {
		endpoint.Stop()
		return err
	}
	p.servers = []*grpc.Server{endpoint, registration}
	return nil
}

func (p *plugin) stop() {
	for _, s := range p.servers {
		s.Stop()
	}
	p.servers = nil
	_ = os.Remove(p.registration)
	_ = os.Remove(p.endpoint)
}

// socketsGone: a restarting kubelet empties plugins_registry of stale sockets it cannot reach,
// so a missing registration socket means "serve again".
func (p *plugin) socketsGone() bool {
	for _, path := range []string{p.registration, p.endpoint} {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return true
		}
	}
	return false
}

func parseResource(spec string) (string, int, error) {
	name, countText, ok := strings.Cut(spec, "=")
	count, err := strconv.Atoi(countText)
	if !ok || err != nil || count < 0 || !strings.Contains(name, "/") {
		return "", 0, fmt.Errorf("--resource %q: want DOMAIN/NAME=COUNT", spec)
	}
	return name, count, nil
}

func run() error {
	var resources resourceFlags
	flag.Var(&resources, "resource", "DOMAIN/NAME=COUNT (repeatable)")
	registryDir := flag.String("registry-dir", "", "the kubelet's plugins_registry directory (<root dir>/plugins_registry)")
	socketDir := flag.String("socket-dir", "", "directory of the device-plugin sockets")
	healthPort := flag.Int("health-port", 0, "port of /healthz on 127.0.0.1")
	nvmeResource := flag.String("nvme-resource", "phison.com/ai100", "containers getting this resource get the NVMe mount")
	nvmeHostPath := flag.String("nvme-host-path", "", "host directory of the NVMe swap space (empty: no mount)")
	nvmeContainerPath := flag.String("nvme-container-path", "/mnt/nvme0", "where containers see --nvme-host-path")
	flag.Parse()
	if *registryDir == "" || *socketDir == "" || len(resources) == 0 {
		return errors.New("--registry-dir, --socket-dir and at least one --resource are required")
	}
	for _, dir := range []string{*registryDir, *socketDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	var plugins []*plugin
	for _, spec := range resources {
		name, count, err := parseResource(spec)
		if err != nil {
			return err
		}
		p := newPlugin(name, count, *socketDir, *registryDir)
		if name == *nvmeResource && *nvmeHostPath != "" {
			for _, d := range p.devices {
				dir := filepath.Join(*nvmeHostPath, d.ID)
				if err := os.MkdirAll(dir, 0o777); err != nil {
					return err
				}
				_ = os.Chmod(dir, 0o1777) // any uid of a pod writes its swap dir here
			}
			p.nvmeHost, p.nvmeContainer = *nvmeHostPath, *nvmeContainerPath
		}
		plugins = append(plugins, p)
	}
	var mu sync.Mutex
	for _, p := range plugins {
		if err := p.start(); err != nil {
			return fmt.Errorf("%s: %w", p.resource, err)
		}
		log.Printf("%s: serving %s, registration socket %s", p.resource, p.endpoint, p.registration)
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range plugins {
			p.stop()
		}
	}()

	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*healthPort)))
	if err != nil {
		return err
	}
	health := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range plugins {
			if !p.registered.Load() {
				http.Error(w, p.resource+" not registered with the kubelet yet", http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = fmt.Fprintln(w, "ok")
	})}
	go func() { _ = health.Serve(listener) }()
	defer health.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Print("stopping")
			return nil
		case <-ticker.C:
			mu.Lock()
			for _, p := range plugins {
				if p.socketsGone() {
					log.Printf("%s: a socket was removed (kubelet restart?): serving again", p.resource)
					p.stop()
					if err := p.start(); err != nil {
						mu.Unlock()
						return fmt.Errorf("%s: %w", p.resource, err)
					}
				}
			}
			mu.Unlock()
		}
	}
}

func main() {
	log.SetPrefix("fto-device-plugin: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}
