// Command scalegen writes a synthetic cluster's cAdvisor and kube-state-metrics history straight into a
// Prometheus TSDB block, for the scale benchmark of `rightsizer recommend` (bench/scale_bench.py).
//
// Fourteen days of 60 s samples for 10,000 containers is about 1.6 billion samples: as OpenMetrics text
// that would be tens of gigabytes for promtool to parse, so the block is encoded here directly with the
// TSDB's own writers (XOR chunks of 120 samples, index, meta.json, tombstones), exactly as Prometheus'
// compactor writes one. The whole history is a single block: Prometheus never compacts a lone block, so
// the server does no background work while it is being measured.
//
// The series and labels follow docs/metrics.md. Deployments are spread round-robin over the namespaces;
// each has one ReplicaSet and a fixed number of pods, each pod a fixed number of containers. Every value
// is drawn from a generator seeded by (seed, object, series), so a dataset is reproducible.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/go-kit/log"
	"github.com/oklog/ulid"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/tsdb/tombstones"
)

const (
	// podNameAlphabet is Kubernetes' SafeEncodeString alphabet, used for pod-template hashes and suffixes.
	podNameAlphabet = "bcdfghjklmnpqrstvwxz2456789"
	// samplesPerChunk is what Prometheus' head cuts chunks at.
	samplesPerChunk = 120
	// cfsPeriodsPerSecond: the kernel's CFS period is 100 ms.
	cfsPeriodsPerSecond = 10
	minutesPerDay       = 1440
	mib                 = 1024 * 1024
)

// kind is what one series measures; it selects the function that generates its samples.
type kind int

const (
	cpuUsage kind = iota
	memoryWorkingSet
	cfsPeriods
	cfsThrottled
	requestCPU
	requestMemory
	limitCPU
	limitMemory
	restarts
	podOwner
	replicaSetOwner
)

// config is the command line.
type config struct {
	out           string
	containers    int
	namespaces    int
	containersPer int
	podsPer       int
	throttleEvery int
	end           int64
	history       time.Duration
	step          time.Duration
	seed          int64
	workers       int
}

// container is one container of one pod, with the parameters of its usage model.
type container struct {
	namespace, pod, name string
	limited              bool
	cpuBase, cpuAmp      float64 // cores
	peakMinute           int     // minute of the UTC day at which the daily cycle peaks
	cpuNoise             float64 // relative, per sample
	memBase              float64 // bytes
	cpuRequest, cpuLimit float64 // cores
	memRequest, memLimit float64 // bytes
	restarts             int     // restarts during the history, at random times
}

// series is one series to write: its labels, what it measures, and whose it is.
type series struct {
	labels labels.Labels
	kind   kind
	owner  int // index into containers; unused for owner series
}

// summary is printed on stdout as JSON when the block is written.
type summary struct {
	Block       string  `json:"block"`
	Dir         string  `json:"dir"`
	Containers  int     `json:"containers"`
	Pods        int     `json:"pods"`
	Deployments int     `json:"deployments"`
	Namespaces  int     `json:"namespaces"`
	Series      uint64  `json:"series"`
	Samples     uint64  `json:"samples"`
	Chunks      uint64  `json:"chunks"`
	MinTimeMs   int64   `json:"minTimeMs"`
	MaxTimeMs   int64   `json:"maxTimeMs"`
	StepSeconds float64 `json:"stepSeconds"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
}

func main() {
	cfg := parseFlags()
	started := time.Now()
	sum, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalegen:", err)
		os.Exit(1)
	}
	sum.Seconds = time.Since(started).Seconds()
	out, _ := json.Marshal(sum)
	fmt.Println(string(out))
}

func parseFlags() config {
	var cfg config
	flag.StringVar(&cfg.out, "out", "", "TSDB directory to write the block into (created if missing)")
	flag.IntVar(&cfg.containers, "containers", 1000, "number of containers")
	flag.IntVar(&cfg.namespaces, "namespaces", 20, "namespaces the Deployments are spread over")
	flag.IntVar(&cfg.containersPer, "containers-per-pod", 2, "containers per pod")
	flag.IntVar(&cfg.podsPer, "pods-per-deployment", 5, "pods per Deployment")
	flag.IntVar(&cfg.throttleEvery, "cfs-every", 5, "1 in N containers has a CPU limit and CFS series")
	flag.Int64Var(&cfg.end, "end", 0, "time of the last sample, Unix seconds (default: now, floored to the step)")
	flag.DurationVar(&cfg.history, "history", 14*24*time.Hour, "length of the history")
	flag.DurationVar(&cfg.step, "step", time.Minute, "sample interval")
	flag.Int64Var(&cfg.seed, "seed", 1, "random seed")
	flag.IntVar(&cfg.workers, "workers", runtime.NumCPU(), "goroutines encoding chunks")
	flag.Parse()
	if cfg.out == "" {
		fmt.Fprintln(os.Stderr, "scalegen: -out is required")
		os.Exit(2)
	}
	if cfg.containers <= 0 || cfg.namespaces <= 0 || cfg.containersPer <= 0 || cfg.podsPer <= 0 ||
		cfg.throttleEvery <= 0 || cfg.step < time.Second || cfg.history < cfg.step || cfg.workers <= 0 {
		fmt.Fprintln(os.Stderr, "scalegen: counts must be positive, -step at least 1s, -history at least -step")
		os.Exit(2)
	}
	if cfg.containers%(cfg.containersPer*cfg.podsPer) != 0 {
		fmt.Fprintf(os.Stderr, "scalegen: -containers must be a multiple of %d (containers per Deployment)\n",
			cfg.containersPer*cfg.podsPer)
		os.Exit(2)
	}
	return cfg
}

func run(cfg config) (summary, error) {
	stepMs := cfg.step.Milliseconds()
	endMs := cfg.end * 1000
	if cfg.end == 0 {
		endMs = time.Now().UnixMilli()
	}
	endMs -= endMs % stepMs
	samples := int(cfg.history.Milliseconds()/stepMs) + 1
	startMs := endMs - int64(samples-1)*stepMs

	containers, deployments, err := buildCluster(cfg)
	if err != nil {
		return summary{}, err
	}
	all := buildSeries(containers, cfg.containersPer)
	sort.Slice(all, func(i, j int) bool { return labels.Compare(all[i].labels, all[j].labels) < 0 })

	if err := os.MkdirAll(cfg.out, 0o777); err != nil {
		return summary{}, err
	}
	id := ulid.MustNew(ulid.Now(), crand.Reader)
	final := filepath.Join(cfg.out, id.String())
	tmp := final + ".tmp-for-creation"
	if err := os.MkdirAll(tmp, 0o777); err != nil {
		return summary{}, err
	}
	defer os.RemoveAll(tmp)

	meta := &tsdb.BlockMeta{
		ULID:       id,
		MinTime:    startMs,
		MaxTime:    endMs + 1, // half-open [MinTime, MaxTime)
		Compaction: tsdb.BlockMetaCompaction{Level: 1, Sources: []ulid.ULID{id}},
		Version:    1,
	}
	gen := generator{cfg: cfg, containers: containers, startMs: startMs, stepMs: stepMs, samples: samples}
	if err := writeBlock(tmp, all, gen, cfg.workers, meta); err != nil {
		return summary{}, err
	}
	if err := writeMeta(tmp, meta); err != nil {
		return summary{}, err
	}
	if _, err := tombstones.WriteFile(log.NewNopLogger(), tmp, tombstones.NewMemTombstones()); err != nil {
		return summary{}, fmt.Errorf("write tombstones: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return summary{}, err
	}
	size, err := dirSize(final)
	if err != nil {
		return summary{}, err
	}
	return summary{
		Block:       id.String(),
		Dir:         cfg.out,
		Containers:  len(containers),
		Pods:        len(containers) / cfg.containersPer,
		Deployments: deployments,
		Namespaces:  cfg.namespaces,
		Series:      meta.Stats.NumSeries,
		Samples:     meta.Stats.NumSamples,
		Chunks:      meta.Stats.NumChunks,
		MinTimeMs:   meta.MinTime,
		MaxTimeMs:   meta.MaxTime - 1,
		StepSeconds: cfg.step.Seconds(),
		Bytes:       size,
	}, nil
}

// buildCluster lays out Deployments, ReplicaSets, pods and containers, and draws each container's model.
// Containers come out grouped by pod, pods by Deployment.
func buildCluster(cfg config) ([]container, int, error) {
	deployments := cfg.containers / (cfg.containersPer * cfg.podsPer)
	containers := make([]container, 0, cfg.containers)
	for d := 0; d < deployments; d++ {
		namespace := fmt.Sprintf("team-%02d", d%cfg.namespaces)
		deployment := fmt.Sprintf("svc-%05d", d)
		rng := rand.New(rand.NewSource(seedOf(cfg.seed, "deployment", namespace, deployment)))
		replicaSet := deployment + "-" + randomName(rng, 10)
		pods := map[string]bool{}
		for len(pods) < cfg.podsPer {
			pods[replicaSet+"-"+randomName(rng, 5)] = true
		}
		podNames := make([]string, 0, len(pods))
		for pod := range pods {
			podNames = append(podNames, pod)
		}
		sort.Strings(podNames)
		// One pod template: the replicas share requests, limits and the shape of their usage.
		templates := make([]container, cfg.containersPer)
		for c := range templates {
			name := containerName(c)
			tmpl := rand.New(rand.NewSource(seedOf(cfg.seed, "template", namespace, deployment, name)))
			cpuBase := 0.02 + tmpl.ExpFloat64()*0.15
			cpuAmp := cpuBase * (0.3 + 1.5*tmpl.Float64())
			memBase := float64(32*mib) + tmpl.ExpFloat64()*float64(256*mib)
			cpuRequest := math.Ceil((cpuBase+cpuAmp)*(0.6+tmpl.Float64())*100) / 100
			memRequest := math.Ceil(memBase*(0.8+0.8*tmpl.Float64())/mib) * mib
			templates[c] = container{
				namespace:  namespace,
				name:       name,
				cpuBase:    cpuBase,
				cpuAmp:     cpuAmp,
				peakMinute: 9*60 + tmpl.Intn(10*60),
				cpuNoise:   0.1 + 0.1*tmpl.Float64(),
				memBase:    memBase,
				cpuRequest: cpuRequest,
				cpuLimit:   math.Ceil(cpuRequest*4*100) / 100,
				memRequest: memRequest,
				memLimit:   math.Ceil(memRequest*1.5/mib) * mib,
			}
		}
		for _, pod := range podNames {
			for _, tmpl := range templates {
				ct := tmpl
				ct.pod = pod
				own := rand.New(rand.NewSource(seedOf(cfg.seed, "container", namespace, pod, ct.name)))
				ct.cpuBase *= 0.9 + 0.2*own.Float64()
				ct.memBase *= 0.9 + 0.2*own.Float64()
				if len(containers)%cfg.throttleEvery == 0 {
					// A tight CPU limit: the daily peak runs into it, so the CFS series show throttling.
					ct.limited = true
					ct.cpuLimit = math.Ceil((ct.cpuBase+ct.cpuAmp)*(0.9+0.3*own.Float64())*100) / 100
				}
				if own.Intn(50) == 0 {
					ct.restarts = 1 + own.Intn(3)
				}
				containers = append(containers, ct)
			}
		}
	}
	if len(containers) != cfg.containers {
		return nil, 0, errors.New("internal error: container count")
	}
	return containers, deployments, nil
}

// containerName names the c-th container of a pod.
func containerName(c int) string {
	names := []string{"app", "proxy", "worker", "agent", "cache", "sidecar"}
	if c < len(names) {
		return names[c]
	}
	return fmt.Sprintf("%s-%d", names[c%len(names)], c/len(names))
}

// buildSeries lists every series of docs/metrics.md for the containers, their pods and ReplicaSets.
func buildSeries(containers []container, perPod int) []series {
	all := make([]series, 0, len(containers)*9)
	seenReplicaSets := map[string]bool{}
	for i, ct := range containers {
		key := []string{"namespace", ct.namespace, "pod", ct.pod, "container", ct.name}
		with := func(name string, extra ...string) labels.Labels {
			return labels.FromStrings(append(append([]string{"__name__", name}, key...), extra...)...)
		}
		all = append(all,
			series{with("container_cpu_usage_seconds_total"), cpuUsage, i},
			series{with("container_memory_working_set_bytes"), memoryWorkingSet, i},
			series{with("kube_pod_container_resource_requests", "resource", "cpu"), requestCPU, i},
			series{with("kube_pod_container_resource_requests", "resource", "memory"), requestMemory, i},
			series{with("kube_pod_container_resource_limits", "resource", "cpu"), limitCPU, i},
			series{with("kube_pod_container_resource_limits", "resource", "memory"), limitMemory, i},
			series{with("kube_pod_container_status_restarts_total"), restarts, i},
		)
		if ct.limited {
			all = append(all,
				series{with("container_cpu_cfs_periods_total"), cfsPeriods, i},
				series{with("container_cpu_cfs_throttled_periods_total"), cfsThrottled, i},
			)
		}
		if i%perPod == 0 {
			replicaSet := ct.pod[:len(ct.pod)-6]
			deployment := replicaSet[:len(replicaSet)-11]
			all = append(all, series{labels.FromStrings("__name__", "kube_pod_owner", "namespace", ct.namespace,
				"pod", ct.pod, "owner_kind", "ReplicaSet", "owner_name", replicaSet),
				podOwner, i})
			if !seenReplicaSets[ct.namespace+"/"+replicaSet] {
				seenReplicaSets[ct.namespace+"/"+replicaSet] = true
				all = append(all, series{labels.FromStrings("__name__", "kube_replicaset_owner", "namespace",
					ct.namespace, "replicaset", replicaSet, "owner_kind", "Deployment", "owner_name", deployment),
					replicaSetOwner, i})
			}
		}
	}
	return all
}

// generator encodes the samples of one series into chunks.
type generator struct {
	cfg        config
	containers []container
	startMs    int64
	stepMs     int64
	samples    int
}

// daily is 1 at the peak minute of the day and 0 twelve hours later (a raised cosine).
func daily(minuteOfDay, peak int) float64 {
	return 0.5 * (1 + math.Cos(2*math.Pi*float64(minuteOfDay-peak)/minutesPerDay))
}

// chunks returns the series' samples as XOR chunks of samplesPerChunk samples.
func (g generator) chunks(s series) ([]chunks.Meta, error) {
	ct := g.containers[s.owner]
	rng := rand.New(rand.NewSource(seedOf(g.cfg.seed, "series", s.labels.String())))
	stepSeconds := float64(g.stepMs) / 1000
	// The daily cycle depends on the minute of the day only: one table per series.
	var profile [minutesPerDay]float64
	if s.kind == cpuUsage || s.kind == memoryWorkingSet || s.kind == cfsPeriods || s.kind == cfsThrottled {
		for m := range profile {
			profile[m] = daily(m, ct.peakMinute)
		}
	}
	restartAt := map[int]bool{}
	if s.kind == restarts {
		for r := 0; r < ct.restarts; r++ {
			restartAt[rng.Intn(g.samples)] = true
		}
	}
	// Counters start at an arbitrary value, as they do for a container that ran before the window.
	counter := 0.0
	if s.kind == cpuUsage || s.kind == cfsPeriods {
		counter = math.Floor(rng.Float64() * 1e5)
	}
	throttledCounter := math.Floor(rng.Float64() * 1e3)
	restartCount := 0.0

	out := make([]chunks.Meta, 0, g.samples/samplesPerChunk+1)
	var chunk *chunkenc.XORChunk
	var app chunkenc.Appender
	for i := 0; i < g.samples; i++ {
		t := g.startMs + int64(i)*g.stepMs
		if i%samplesPerChunk == 0 {
			chunk = chunkenc.NewXORChunk()
			var err error
			if app, err = chunk.Appender(); err != nil {
				return nil, err
			}
			out = append(out, chunks.Meta{Chunk: chunk, MinTime: t})
		}
		minute := int((t / 60000) % minutesPerDay)
		var v float64
		switch s.kind {
		case cpuUsage, cfsPeriods, cfsThrottled:
			// The same demand drives usage and throttling; limited containers are capped at the limit.
			demand := (ct.cpuBase + ct.cpuAmp*profile[minute]) * (1 + ct.cpuNoise*rng.NormFloat64())
			demand = math.Max(demand, 0.001)
			used := demand
			if ct.limited {
				used = math.Min(demand, ct.cpuLimit)
			}
			switch s.kind {
			case cpuUsage:
				counter += used * stepSeconds
				v = counter
			case cfsPeriods:
				counter += math.Round(stepSeconds * cfsPeriodsPerSecond * math.Min(1, 0.3+used/ct.cpuLimit))
				v = counter
			default:
				share := math.Min(1, math.Max(0, (demand/ct.cpuLimit-0.9)/0.6))
				throttledCounter += math.Round(stepSeconds * cfsPeriodsPerSecond * share)
				v = throttledCounter
			}
		case memoryWorkingSet:
			bytes := ct.memBase * (1 + 0.15*profile[minute] + 0.02*rng.NormFloat64())
			v = math.Round(bytes/4096) * 4096
		case requestCPU:
			v = ct.cpuRequest
		case requestMemory:
			v = ct.memRequest
		case limitCPU:
			v = ct.cpuLimit
		case limitMemory:
			v = ct.memLimit
		case restarts:
			if restartAt[i] {
				restartCount++
			}
			v = restartCount
		case podOwner, replicaSetOwner:
			v = 1
		}
		app.Append(t, v)
		out[len(out)-1].MaxTime = t
	}
	return out, nil
}

// writeBlock encodes the series (already sorted by labels) on `workers` goroutines and writes chunks and
// index in order, filling in meta's stats.
func writeBlock(dir string, all []series, gen generator, workers int, meta *tsdb.BlockMeta) error {
	symbols := map[string]struct{}{}
	for _, s := range all {
		for _, l := range s.labels {
			symbols[l.Name] = struct{}{}
			symbols[l.Value] = struct{}{}
		}
	}
	sorted := make([]string, 0, len(symbols))
	for sym := range symbols {
		sorted = append(sorted, sym)
	}
	sort.Strings(sorted)

	chunkw, err := chunks.NewWriter(filepath.Join(dir, "chunks"))
	if err != nil {
		return fmt.Errorf("open chunk writer: %w", err)
	}
	indexw, err := index.NewWriter(context.Background(), filepath.Join(dir, "index"))
	if err != nil {
		chunkw.Close()
		return fmt.Errorf("open index writer: %w", err)
	}
	// Closed once: on failure here (the caller removes the directory), on success at the end.
	closeBoth := func() { chunkw.Close(); indexw.Close() }
	for _, sym := range sorted {
		if err := indexw.AddSymbol(sym); err != nil {
			closeBoth()
			return fmt.Errorf("add symbol: %w", err)
		}
	}

	type result struct {
		chks []chunks.Meta
		err  error
	}
	pending := make(chan chan result, 512)
	slots := make(chan struct{}, workers)
	go func() {
		defer close(pending)
		for i := range all {
			done := make(chan result, 1)
			pending <- done
			slots <- struct{}{}
			go func(s series) {
				defer func() { <-slots }()
				chks, err := gen.chunks(s)
				done <- result{chks, err}
			}(all[i])
		}
	}()
	ref := storage.SeriesRef(0)
	var failed error
	for done := range pending {
		r := <-done
		if failed != nil {
			continue // drain, so the producer goroutine ends
		}
		if r.err != nil {
			failed = r.err
			continue
		}
		if err := chunkw.WriteChunks(r.chks...); err != nil {
			failed = fmt.Errorf("write chunks: %w", err)
			continue
		}
		if err := indexw.AddSeries(ref, all[ref].labels, r.chks...); err != nil {
			failed = fmt.Errorf("add series: %w", err)
			continue
		}
		meta.Stats.NumSeries++
		meta.Stats.NumChunks += uint64(len(r.chks))
		for _, c := range r.chks {
			meta.Stats.NumSamples += uint64(c.Chunk.NumSamples())
		}
		ref++
	}
	if failed != nil {
		closeBoth()
		return failed
	}
	if err := chunkw.Close(); err != nil {
		indexw.Close()
		return fmt.Errorf("close chunks: %w", err)
	}
	if err := indexw.Close(); err != nil {
		return fmt.Errorf("close index: %w", err)
	}
	return nil
}

func writeMeta(dir string, meta *tsdb.BlockMeta) error {
	data, err := json.MarshalIndent(meta, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "meta.json"), data, 0o666)
}

// randomName draws n characters of Kubernetes' pod-name alphabet.
func randomName(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = podNameAlphabet[rng.Intn(len(podNameAlphabet))]
	}
	return string(b)
}

// seedOf derives a generator seed from the run's seed and the names of what it generates for.
func seedOf(seed int64, parts ...string) int64 {
	h := fnv.New64a()
	fmt.Fprint(h, seed)
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return int64(h.Sum64() & math.MaxInt64)
}

func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			total += info.Size()
		}
		return nil
	})
	return total, err
}
