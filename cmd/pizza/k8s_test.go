package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/1588-pizza/pizza/db"
)

type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	jobs        map[string]*batchv1.Job
	namespaces  []string
}

// loadManifests decodes every document of deploy/k8s strictly into its Kubernetes API type: an
// unknown or misspelt field fails the test.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, jobs: map[string]*batchv1.Job{},
	}
	files, err := filepath.Glob("../../deploy/k8s/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var u unstructured.Unstructured
			require.NoError(t, yaml.Unmarshal(doc, &u.Object), f)
			strict := func(into any) {
				require.NoError(t, yaml.UnmarshalStrict(doc, into), "%s: %s %s", f, u.GetKind(), u.GetName())
			}
			if u.GetKind() != "Namespace" {
				require.Equal(t, "pizza", u.GetNamespace(), "%s: %s %s", f, u.GetKind(), u.GetName())
			}
			switch u.GetKind() {
			case "Deployment":
				var o appsv1.Deployment
				strict(&o)
				m.deployments[o.Name] = &o
			case "Service":
				var o corev1.Service
				strict(&o)
				m.services[o.Name] = &o
			case "PodDisruptionBudget":
				var o policyv1.PodDisruptionBudget
				strict(&o)
				m.pdbs[o.Name] = &o
			case "HorizontalPodAutoscaler":
				var o autoscalingv2.HorizontalPodAutoscaler
				strict(&o)
				m.hpas[o.Name] = &o
			case "ConfigMap":
				var o corev1.ConfigMap
				strict(&o)
				m.configMaps[o.Name] = &o
			case "Secret":
				var o corev1.Secret
				strict(&o)
				m.secrets[o.Name] = &o
			case "Job":
				var o batchv1.Job
				strict(&o)
				m.jobs[o.Name] = &o
			case "Namespace":
				var o corev1.Namespace
				strict(&o)
				m.namespaces = append(m.namespaces, o.Name)
			default:
				t.Fatalf("%s: unexpected kind %s", f, u.GetKind())
			}
		}
	}
	return m
}

// environment is what a container would see: its envFrom sources, then its own env.
func (m manifests) environment(t *testing.T, c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := m.configMaps[from.ConfigMapRef.Name]
			require.NotNil(t, cm, "ConfigMap %s exists", from.ConfigMapRef.Name)
			for k, v := range cm.Data {
				env[k] = v
			}
		case from.SecretRef != nil:
			s := m.secrets[from.SecretRef.Name]
			require.NotNil(t, s, "Secret %s exists", from.SecretRef.Name)
			for k, v := range s.StringData {
				env[k] = v
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// The manifests are checked by construction: strictly typed, and every cross-reference holds.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	keys := append(configKeys(t), "GOMEMLIMIT") // read by Go's runtime
	require.Equal(t, []string{"pizza"}, m.namespaces)

	components := append([]string{"bff"}, func() []string {
		var out []string
		for _, s := range db.Services {
			out = append(out, string(s))
		}
		return out
	}()...)
	var image string
	for _, name := range components {
		d := m.deployments[name]
		require.NotNil(t, d, "a Deployment for %s", name)
		require.Equal(t, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels, name)
		pod := d.Spec.Template.Spec
		require.Len(t, pod.Containers, 1, name)
		c := pod.Containers[0]
		if image == "" {
			image = c.Image
		}
		require.Equal(t, image, c.Image, "one image for every component")
		require.NotContains(t, c.Image, ":latest")
		require.Equal(t, []string{"serve", name}, c.Args, name)

		env := m.environment(t, c)
		for k := range env {
			require.Contains(t, keys, k, "%s sets %s, which the configuration does not read", name, k)
		}
		cfg, err := loadConfig(env)
		require.NoError(t, err, "%s's environment is a valid configuration", name)
		require.True(t, cfg.production(), name)
		// The manifests ship no usable secret: the placeholder is refused until it is replaced.
		_, err = cfg.authSecret(slogDiscard())
		require.ErrorContains(t, err, "placeholder", "%s starts with the shipped secret", name)
		env["PIZZA_AUTH_SECRET"] = "u0Q3m8xq7Jc2ZbGk1vR9tYf4WnE6pLsA0dHhK5iMoTc="
		cfg, err = loadConfig(env)
		require.NoError(t, err)
		_, err = cfg.authSecret(slogDiscard())
		require.NoError(t, err, "%s: with a generated secret in place, production starts", name)

		addr := cfg.BFF.HTTPAddr
		if name != "bff" {
			s, _ := db.ParseService(name)
			addr = cfg.service(s).Addr
		}
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.Equal(t, "0.0.0.0", host, "%s listens beyond loopback", name)
		require.Equal(t, port, itoa(c.Ports[0].ContainerPort), "%s's container port is its listen port", name)
		require.Equal(t, "http", c.Ports[0].Name)
		// Prometheus scrapes the services on their (internal) port, the BFF on its ops port:
		// its public port serves no /metrics.
		metricsPort := port
		if name == "bff" {
			opsHost, opsPort, err := net.SplitHostPort(cfg.BFF.OpsAddr)
			require.NoError(t, err)
			require.Equal(t, "0.0.0.0", opsHost, "Prometheus reaches the BFF's ops port")
			require.NotEqual(t, port, opsPort)
			require.Len(t, c.Ports, 2)
			require.Equal(t, "metrics", c.Ports[1].Name)
			require.Equal(t, opsPort, itoa(c.Ports[1].ContainerPort), "the BFF's metrics port is PIZZA_OPS_ADDR's")
			metricsPort = opsPort
		} else {
			require.Len(t, c.Ports, 1)
		}
		ann := d.Spec.Template.Annotations
		require.Equal(t, "true", ann["prometheus.io/scrape"], name)
		require.Equal(t, metricsPort, ann["prometheus.io/port"], "%s is scraped where it serves /metrics", name)
		require.Equal(t, "/metrics", ann["prometheus.io/path"], name)

		// Probes hit the paths every component serves, on its port.
		require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path, name)
		require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, name)
		require.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port.String())
		require.Equal(t, "http", c.LivenessProbe.HTTPGet.Port.String())

		// Graceful termination: the pause before SIGTERM plus the drain fit in the grace period.
		require.NotNil(t, c.Lifecycle.PreStop.Sleep, name)
		pause := c.Lifecycle.PreStop.Sleep.Seconds
		require.Greater(t, *pod.TerminationGracePeriodSeconds, pause+int64(cfg.Common.ShutdownTimeout.Seconds()), name)
		require.False(t, c.Resources.Requests.Cpu().IsZero(), name)
		require.False(t, c.Resources.Limits.Memory().IsZero(), name)

		svc := m.services[name]
		require.NotNil(t, svc, "a Service for %s", name)
		require.Equal(t, d.Spec.Selector.MatchLabels, svc.Spec.Selector, name)
		require.Len(t, svc.Spec.Ports, 1, "%s's Service exposes its API only", name)
		require.Equal(t, "http", svc.Spec.Ports[0].TargetPort.String())
		require.Equal(t, itoa(svc.Spec.Ports[0].Port), port, "%s's Service port is where callers look", name)

		pdb := m.pdbs[name]
		require.NotNil(t, pdb, "a PodDisruptionBudget for %s", name)
		require.Equal(t, d.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)

		// Callers find each service at its Service's name and port.
		for _, s := range db.Services {
			want := "http://" + string(s) + ":" + itoa(m.services[string(s)].Spec.Ports[0].Port)
			require.Equal(t, want, cfg.service(s).URL, "%s finds %s", name, s)
		}
	}

	for _, name := range []string{"bff", "order"} {
		h := m.hpas[name]
		require.NotNil(t, h, "an HPA for %s", name)
		require.Equal(t, "Deployment", h.Spec.ScaleTargetRef.Kind)
		require.Contains(t, m.deployments, h.Spec.ScaleTargetRef.Name)
		require.EqualValues(t, 1, *h.Spec.MinReplicas)
		require.EqualValues(t, 5, h.Spec.MaxReplicas)
		require.EqualValues(t, 50, *h.Spec.Metrics[0].Resource.Target.AverageUtilization)
	}

	job := m.jobs["pizza-migrate"]
	require.NotNil(t, job)
	jc := job.Spec.Template.Spec.Containers[0]
	require.Equal(t, image, jc.Image)
	require.Equal(t, []string{"migrate"}, jc.Args)
	_, err := loadConfig(m.environment(t, jc))
	require.NoError(t, err)

	kust, err := os.ReadFile("../../deploy/k8s/kustomization.yaml")
	require.NoError(t, err)
	files, _ := filepath.Glob("../../deploy/k8s/*.yaml")
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			require.Contains(t, string(kust), "- "+base, "kustomization lists %s", base)
		}
	}
}

func itoa[T ~int32 | ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }
