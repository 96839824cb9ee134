package deploy_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

const chartDir = "kubernetes/flashsale"

// helmEnv names the helm binary; `make lint-deploy` sets it after
// installing the pinned helm into ./bin. `make test` does not install helm
// (it takes a minute to build), so there these tests skip.
const helmEnv = "FLASHSALE_HELM"

func helm(t *testing.T) string {
	t.Helper()
	path := os.Getenv(helmEnv)
	if path == "" {
		t.Skipf("%s is not set: `make lint-deploy` runs the Helm chart's tests with the pinned helm", helmEnv)
	}
	return path
}

// manifest is one rendered Kubernetes object, as far as the tests read it.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Selector yaml.Node `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		MaxUnavailable any `yaml:"maxUnavailable"`
		MinAvailable   any `yaml:"minAvailable"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
	Containers                    []struct {
		Args []string `yaml:"args"`
		Env  []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				SecretKeyRef struct {
					Name     string `yaml:"name"`
					Key      string `yaml:"key"`
					Optional bool   `yaml:"optional"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string
			ContainerPort int `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe probe `yaml:"readinessProbe"`
		LivenessProbe  probe `yaml:"livenessProbe"`
		Lifecycle      struct {
			PreStop struct {
				Exec struct{ Command []string } `yaml:"exec"`
			} `yaml:"preStop"`
		} `yaml:"lifecycle"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct{ Key, Path string }
		} `yaml:"secret"`
		EmptyDir any `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// render runs helm template with the lint values, then the values of
// extra (when not nil), then the --set pairs.
func render(t *testing.T, extra map[string]any, set ...string) (map[string]map[string]*manifest, error) {
	t.Helper()
	args := []string{"template", "t", chartDir, "-f", filepath.Join(chartDir, "ci/lint-values.yaml")}
	if extra != nil {
		b, err := yaml.Marshal(extra)
		require.NoError(t, err)
		file := filepath.Join(t.TempDir(), "values.yaml")
		require.NoError(t, os.WriteFile(file, b, 0o600))
		args = append(args, "-f", file)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.Command(helm(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %w: %s", err, stderr.String())
	}
	objs := map[string]map[string]*manifest{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if m.Kind == "" {
			continue
		}
		if objs[m.Kind] == nil {
			objs[m.Kind] = map[string]*manifest{}
		}
		objs[m.Kind][m.Metadata.Name] = &m
	}
	return objs, nil
}

var roles = []string{node.RoleWaitingRoom, node.RoleCheckout, node.RoleAdmitter}

// TestHelmChartShape: one Deployment, Service and PodDisruptionBudget per
// role, each pod running its role with probes on /healthz and /readyz, a
// preStop and a grace period long enough for the shutdown delay, resource
// requests, and only FLASHSALE_* variables that are settings of serve.
func TestHelmChartShape(t *testing.T) {
	t.Parallel()
	objs, err := render(t, nil)
	require.NoError(t, err)

	var cfg node.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.Flags(fs)
	secret := objs["Secret"]["t-flashsale-secret"]
	require.NotNil(t, secret, "the chart makes the Secret from the values")

	for _, role := range roles {
		d := objs["Deployment"]["t-flashsale-"+role]
		require.NotNil(t, d, "a Deployment for %s", role)
		require.Equal(t, role, d.Spec.Template.Metadata.Labels["app.kubernetes.io/component"])
		pod := d.Spec.Template.Spec
		require.Len(t, pod.Containers, 1)
		c := pod.Containers[0]
		require.Equal(t, "serve", c.Args[0])
		require.Contains(t, c.Args, "--roles="+role)
		require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
		require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
		require.NotEmpty(t, c.Lifecycle.PreStop.Exec.Command, "%s: a preStop", role)
		require.NotEmpty(t, c.Resources.Requests["cpu"], "%s: a CPU request", role)
		require.NotEmpty(t, c.Resources.Requests["memory"], "%s: a memory request", role)

		var delay time.Duration
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--shutdown-delay="); ok {
				delay, err = time.ParseDuration(v)
				require.NoError(t, err)
			}
		}
		require.Positive(t, delay, "%s: --shutdown-delay", role)
		preStop, err := time.ParseDuration(c.Lifecycle.PreStop.Exec.Command[len(c.Lifecycle.PreStop.Exec.Command)-1] + "s")
		require.NoError(t, err)
		require.GreaterOrEqual(t, time.Duration(pod.TerminationGracePeriodSeconds)*time.Second, preStop+delay+15*time.Second,
			"%s: the grace period must cover preStop, the shutdown delay and the 15 s drain", role)

		for _, e := range c.Env {
			name, ok := strings.CutPrefix(e.Name, "FLASHSALE_")
			require.True(t, ok, "%s: %s is not a flashsale setting", role, e.Name)
			flagName := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			require.NotNil(t, fs.Lookup(flagName), "%s: %s sets no flag of serve (--%s)", role, e.Name, flagName)
			if e.ValueFrom != nil && !e.ValueFrom.SecretKeyRef.Optional {
				require.Contains(t, secret.StringData, e.ValueFrom.SecretKeyRef.Key, "%s: %s", role, e.Name)
			}
		}

		svc := objs["Service"]["t-flashsale-"+role]
		require.NotNil(t, svc, "a Service for %s", role)
		pdb := objs["PodDisruptionBudget"]["t-flashsale-"+role]
		require.NotNil(t, pdb, "a PodDisruptionBudget for %s", role)
		require.True(t, pdb.Spec.MaxUnavailable != nil || pdb.Spec.MinAvailable != nil)
		var sel struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		}
		require.NoError(t, pdb.Spec.Selector.Decode(&sel))
		for k, v := range sel.MatchLabels {
			require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "%s: the PDB selects the pods", role)
		}
		var svcSel map[string]string
		require.NoError(t, svc.Spec.Selector.Decode(&svcSel))
		for k, v := range svcSel {
			require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "%s: the Service selects the pods", role)
		}
	}
	require.Contains(t, objs["Ingress"], "t-flashsale")
}

// TestHelmChartRefusesBadValues: what would give a pod that cannot start,
// or a shutdown the kubelet cuts short, fails the render naming the value.
func TestHelmChartRefusesBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"secret.adminToken="}, "set secret.adminToken"},
		{[]string{"secret.ticketKey="}, "set secret.ticketKey"},
		{[]string{"secret.identitySecret="}, "set secret.identitySecret, or config.identity-jwks-url"},
		{[]string{"secret.webhookSecret="}, "set secret.webhookSecret"},
		{[]string{"shutdown.terminationGracePeriodSeconds=20"}, "shutdown.terminationGracePeriodSeconds (20) must be at least"},
		{[]string{"roles.checkout.enabled=false"}, "ingress.enabled needs roles.waitingroom and roles.checkout"},
	} {
		_, err := render(t, nil, tc.set...)
		require.Error(t, err, "%v", tc.set)
		require.Contains(t, err.Error(), tc.want, "%v", tc.set)
	}
}

// TestHelmChartPodsRun runs each role's pod as the chart renders it (its
// args, its environment with the Secret's values, its ticket key file) as
// a real flashsale process on the local Redis and MariaDB: it becomes ready
// on its readiness probe, and on SIGTERM answers 503 there while it drains,
// then exits within the grace period.
func TestHelmChartPodsRun(t *testing.T) {
	t.Parallel()
	helm(t) // skip before building
	bin := buildFlashsale(t)
	_, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	keyPath, _ := testenv.KeyFile(t)
	objs, err := render(t, map[string]any{
		"secret": map[string]any{"redisURL": testenv.RedisURL(), "mysqlDSN": dsn, "ticketKey": readFile(t, keyPath)},
		"config": map[string]any{"redis-key-prefix": ks.Prefix},
	}, "shutdown.shutdownDelaySeconds=2")
	require.NoError(t, err)
	secret := objs["Secret"]["t-flashsale-secret"].StringData

	var wg sync.WaitGroup
	for _, role := range roles {
		pod := objs["Deployment"]["t-flashsale-"+role].Spec.Template.Spec
		wg.Go(func() { runPod(t, bin, role, pod, secret) })
	}
	wg.Wait()
}

// runPod runs one rendered pod's container as a local process.
func runPod(t *testing.T, bin, role string, pod podSpec, secret map[string]string) {
	c := pod.Containers[0]
	// the volumes, as local directories
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		dir := t.TempDir()
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				for _, it := range v.Secret.Items {
					require.Contains(t, secret, it.Key)
					require.NoError(t, os.WriteFile(filepath.Join(dir, it.Path), []byte(secret[it.Key]), 0o600))
				}
			}
		}
		mounts[vm.MountPath] = dir
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			var ok bool
			if v, ok = secret[e.ValueFrom.SecretKeyRef.Key]; !ok {
				require.True(t, e.ValueFrom.SecretKeyRef.Optional, "%s: %s", role, e.Name)
				continue
			}
		}
		for mp, dir := range mounts {
			if p, ok := strings.CutPrefix(v, mp); ok {
				v = dir + p
			}
		}
		env = append(env, e.Name+"="+v)
	}
	// the container's port, on a free loopback port here
	require.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port)
	port := freePort(t)
	args := make([]string, 0, len(c.Args))
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--listen=") {
			require.Equal(t, fmt.Sprintf("--listen=0.0.0.0:%d", c.Ports[0].ContainerPort), a)
			a = "--listen=" + port
		}
		args = append(args, a)
	}
	var log testenv.SyncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &log, &log
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", role, log.String())
		}
	})

	ready := "http://" + port + c.ReadinessProbe.HTTPGet.Path
	status := func() int {
		resp, err := http.Get(ready)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return status() == http.StatusOK }, 30*time.Second, 50*time.Millisecond,
		"%s never became ready on %s", role, ready)
	live := "http://" + port + c.LivenessProbe.HTTPGet.Path
	resp, err := http.Get(live)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s", role, live)

	// the kubelet's stop: SIGTERM (after preStop); readiness fails while it drains
	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return status() == http.StatusServiceUnavailable }, 2*time.Second, 20*time.Millisecond,
		"%s: /readyz should answer 503 during --shutdown-delay", role)
	select {
	case err := <-exited:
		stopped = true
		require.NoError(t, err, "%s exit", role)
	case <-time.After(time.Duration(pod.TerminationGracePeriodSeconds) * time.Second):
		t.Fatalf("%s did not exit within the grace period of %d s", role, pod.TerminationGracePeriodSeconds)
	}
	require.Less(t, time.Since(start), time.Duration(pod.TerminationGracePeriodSeconds)*time.Second)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// buildFlashsale builds cmd/flashsale into the test's temporary directory.
func buildFlashsale(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flashsale")
	out, err := exec.Command("go", "build", "-o", path, "github.com/flashsale/flashsale/cmd/flashsale").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return path
}
