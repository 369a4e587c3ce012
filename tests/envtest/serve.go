package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/cli"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const (
	etcdReadyTimeout      = 60 * time.Second
	apiserverReadyTimeout = 150 * time.Second
	kcmReadyTimeout       = 60 * time.Second
	kcmStopTimeout        = 10 * time.Second
	apiserverStopTimeout  = 20 * time.Second
)

// kcmControllers is the smallest set of kube-controller-manager controllers
// that gives a cluster the behaviour Coffer's tests rely on: ownerReference
// cascading deletion (garbage collector), namespace deletion (namespace
// controller, which empties a Terminating namespace) and the "default"
// ServiceAccount in every namespace (serviceaccount controller).
var kcmControllers = "garbage-collector-controller,namespace-controller,serviceaccount-controller"

var logger = log.New(os.Stdout, "coffer-envtest: ", log.LstdFlags|log.Lmicroseconds)

var errSignal = errors.New("signal")

func serveMain(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dirFlag := fs.String("dir", "", "directory holding the state, certificates, etcd data and logs (created if missing)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dirFlag == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: coffer-envtest serve --dir DIR")
		return 2
	}
	dir, err := filepath.Abs(*dirFlag)
	if err != nil {
		logger.Print(err)
		return 1
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		logger.Print(err)
		return 1
	}
	p := newPaths(dir)
	_ = os.Remove(p.ready)

	st, fresh, err := loadOrInitState(p)
	if err != nil {
		logger.Printf("state: %v", err)
		return 1
	}
	if fresh {
		logger.Printf("initialised %s: etcd client port %d, etcd peer port %d, apiserver port %d", dir, st.EtcdClientPort, st.EtcdPeerPort, st.APIServerPort)
	} else {
		logger.Printf("reusing %s: etcd client port %d, etcd peer port %d, apiserver port %d", dir, st.EtcdClientPort, st.EtcdPeerPort, st.APIServerPort)
	}

	// kube-apiserver runs in this process and logs through klog to stderr:
	// send fd 2 (klog, and any Go runtime panic) to DIR/apiserver.log.
	// This process's own messages go to stdout.
	apiLog, err := os.OpenFile(p.apiserverLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		logger.Print(err)
		return 1
	}
	if err := unix.Dup2(int(apiLog.Fd()), 2); err != nil {
		logger.Printf("redirect stderr: %v", err)
		return 1
	}
	_ = apiLog.Close()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	s := &server{p: p, st: st, sigs: sigs}
	err = s.run()
	s.shutdown(errors.Is(err, errSignal))
	if err != nil && !errors.Is(err, errSignal) {
		logger.Printf("failed: %v (logs: %s, %s, %s)", err, p.etcdLog, p.apiserverLog, p.kcmLog)
		return 1
	}
	logger.Print("stopped")
	return 0
}

type server struct {
	p    paths
	st   state
	sigs chan os.Signal

	etcd     *embed.Etcd
	apiErr   chan error // receives kube-apiserver's result once it returns
	apiAlive bool
	kcm      *child
}

func (s *server) url() string { return fmt.Sprintf("https://127.0.0.1:%d", s.st.APIServerPort) }

func (s *server) run() error {
	start := time.Now()

	// 1. etcd
	if err := s.startEtcd(); err != nil {
		return err
	}
	logger.Printf("etcd ready on 127.0.0.1:%d (%.1fs)", s.st.EtcdClientPort, time.Since(start).Seconds())

	// 2. kube-apiserver, in this process. app.NewAPIServerCommand calls
	// genericapiserver.SetupSignalContext (which may run only once per
	// process): its context is cancelled on the first SIGTERM/SIGINT, and
	// that context is what stops the server. We also get the signal on
	// s.sigs and stop the rest around it.
	cmd := apiserverapp.NewAPIServerCommand()
	cmd.SetArgs(s.apiserverArgs())
	cmd.SetOut(os.Stderr)
	s.apiErr = make(chan error, 1)
	s.apiAlive = true
	go func() { s.apiErr <- cli.RunNoErrOutput(cmd) }()

	tlsCfg, err := s.adminTLS()
	if err != nil {
		return err
	}
	if err := s.waitAPIServerReady(tlsCfg); err != nil {
		return err
	}
	logger.Printf("kube-apiserver ready at %s (%.1fs)", s.url(), time.Since(start).Seconds())

	// 3. admin kubeconfig
	if err := s.writeKubeconfig(); err != nil {
		return err
	}

	// 4. kube-controller-manager, as a child process of this one
	s.kcm, err = startChild(s.p.kcmLog, "controller-manager",
		"--kubeconfig="+s.p.kubeconfig,
		"--controllers="+kcmControllers,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=1",
	)
	if err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	logger.Printf("kube-controller-manager started (pid %d, controllers %s)", s.kcm.cmd.Process.Pid, kcmControllers)
	_ = writeFileAtomic(s.p.kcmPid, []byte(strconv.Itoa(s.kcm.cmd.Process.Pid)+"\n"), 0o644)
	if err := s.waitKCM(); err != nil {
		return err
	}

	// 5. ready
	if err := writeFileAtomic(s.p.ready, []byte(s.url()+"\n"), 0o644); err != nil {
		return err
	}
	logger.Printf("ready after %.1fs", time.Since(start).Seconds())
	fmt.Printf("envtest ready: %s kubeconfig=%s\n", s.url(), s.p.kubeconfig)

	select {
	case sig := <-s.sigs:
		logger.Printf("received %v, stopping", sig)
		return errSignal
	case err := <-s.apiErr:
		s.apiAlive = false
		return fmt.Errorf("kube-apiserver exited: %v", err)
	case <-s.kcm.done:
		return fmt.Errorf("kube-controller-manager exited: %v", s.kcm.err)
	}
}

func (s *server) startEtcd() error {
	cfg := embed.NewConfig()
	cfg.Name = "coffer-envtest"
	cfg.Dir = s.p.etcd
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(s.st.EtcdClientPort)}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(s.st.EtcdPeerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.InitialClusterToken = "coffer-envtest"
	cfg.UnsafeNoFsync = true
	// The controller benchmark keeps 100,000 SealedSecrets, their Secrets
	// and the revisions of every status write until the API server's
	// five-minute compaction: past etcd's 2 GiB default quota.
	cfg.QuotaBackendBytes = 8 << 30
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	// embed.NewConfig leaves this 0 (only etcd's flags default it), which
	// would log every request as slow.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.LogOutputs = []string{s.p.etcdLog}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	s.etcd = e
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	case sig := <-s.sigs:
		logger.Printf("received %v while starting etcd", sig)
		return errSignal
	case <-time.After(etcdReadyTimeout):
		return fmt.Errorf("etcd not ready after %v", etcdReadyTimeout)
	}
}

func (s *server) apiserverArgs() []string {
	p, url := s.p, s.url()
	return []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(s.st.EtcdClientPort),
		"--cert-dir=" + p.pki,
		"--secure-port=" + strconv.Itoa(s.st.APIServerPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Service cannot get a loopback endpoint (Endpoints
		// validation rejects 127.0.0.0/8), so do not try to maintain one.
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount",
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + url,
		"--api-audiences=" + url,
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--v=0",
	}
}

func (s *server) adminTLS() (*tls.Config, error) {
	caPEM, err := os.ReadFile(s.p.caCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", s.p.caCert)
	}
	pair, err := tls.LoadX509KeyPair(s.p.adminCert, s.p.adminKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

func (s *server) waitAPIServerReady(tlsCfg *tls.Config) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer client.CloseIdleConnections()
	deadline := time.After(apiserverReadyTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		select {
		case err := <-s.apiErr:
			s.apiAlive = false
			return fmt.Errorf("kube-apiserver exited before ready: %v", err)
		case sig := <-s.sigs:
			logger.Printf("received %v while starting kube-apiserver", sig)
			return errSignal
		case <-deadline:
			return fmt.Errorf("kube-apiserver not ready after %v: %s", apiserverReadyTimeout, last)
		case <-tick.C:
		}
		resp, err := client.Get(s.url() + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("/readyz: %d %s", resp.StatusCode, body)
	}
}

func (s *server) writeKubeconfig() error {
	read := func(f string) ([]byte, error) { return os.ReadFile(f) }
	ca, err := read(s.p.caCert)
	if err != nil {
		return err
	}
	cert, err := read(s.p.adminCert)
	if err != nil {
		return err
	}
	key, err := read(s.p.adminKey)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"envtest": {Server: s.url(), CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"envtest-admin": {ClientCertificateData: cert, ClientKeyData: key}},
		Contexts:       map[string]*clientcmdapi.Context{"envtest": {Cluster: "envtest", AuthInfo: "envtest-admin"}},
		CurrentContext: "envtest",
	}
	data, err := clientcmd.Write(cfg)
	if err != nil {
		return err
	}
	return writeFileAtomic(s.p.kubeconfig, data, 0o600)
}

// waitKCM waits until the serviceaccount controller has made the "default"
// ServiceAccount of the "default" namespace: proof that
// kube-controller-manager runs and talks to the API server.
func (s *server) waitKCM() error {
	restCfg, err := clientcmd.BuildConfigFromFlags("", s.p.kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	deadline := time.After(kcmReadyTimeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		cancel()
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			logger.Printf("waiting for kube-controller-manager: %v", err)
		}
		select {
		case <-s.kcm.done:
			return fmt.Errorf("kube-controller-manager exited: %v", s.kcm.err)
		case err := <-s.apiErr:
			s.apiAlive = false
			return fmt.Errorf("kube-apiserver exited: %v", err)
		case sig := <-s.sigs:
			logger.Printf("received %v while starting kube-controller-manager", sig)
			return errSignal
		case <-deadline:
			return fmt.Errorf("kube-controller-manager did not create ServiceAccount default/default within %v", kcmReadyTimeout)
		case <-tick.C:
		}
	}
}

// shutdown stops whatever was started, in reverse order: controller manager,
// API server, etcd. bySignal tells that kube-apiserver already got the
// signal through its own handler (asking it again would make that handler
// exit the process).
func (s *server) shutdown(bySignal bool) {
	_ = os.Remove(s.p.ready)
	if s.kcm != nil {
		s.kcm.stop(kcmStopTimeout)
		_ = os.Remove(s.p.kcmPid)
	}
	if s.apiAlive {
		if !bySignal {
			genericapiserver.RequestShutdown()
		}
		select {
		case err := <-s.apiErr:
			if err != nil {
				logger.Printf("kube-apiserver: %v", err)
			}
		case <-time.After(apiserverStopTimeout):
			logger.Printf("kube-apiserver still stopping after %v, going on", apiserverStopTimeout)
		}
		s.apiAlive = false
	}
	if s.etcd != nil {
		done := make(chan struct{})
		go func() { s.etcd.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			logger.Print("etcd still closing after 10s, going on")
		}
	}
}

// child is a process that this one started and that dies with it.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit status, set before done is closed
}

// startChild re-executes this binary with args, output to logPath. The
// child gets SIGKILL if this process dies (PR_SET_PDEATHSIG). Linux sends
// that signal when the *thread* that forked the child exits, so the fork
// happens on a locked OS thread that stays put until the child is gone.
func startChild(logPath string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c := &child{done: make(chan struct{})}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Args[0] = "coffer-envtest"
	c.cmd.Stdin = nil
	c.cmd.Stdout = logFile
	c.cmd.Stderr = logFile
	// Own process group: a Ctrl-C in a terminal reaches only serve, which
	// then stops the child itself.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}

	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer logFile.Close()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

func (c *child) stop(timeout time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
