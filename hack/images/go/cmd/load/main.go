// Command load makes CPU and memory demand on a schedule, so that tests and the demo of
// rightsizer see real usage, real CFS throttling and real OOM kills on a real node.
//
//	load -cpu 250m                         # a steady quarter of a core
//	load -cpu 800m@2m,100m@4m              # a cycle: 2 minutes busy, 4 minutes quiet, repeated
//	load -cpu 100m@50s,1500m@10s           # a burst of 10 s every minute
//	load -memory 96Mi                      # hold 96 MiB (reached at -memory-rate)
//	load -memory 64Mi -leak 512Ki          # hold 64 MiB, then leak 512 KiB a second
//	load -cpu 200m -for 90s                # a batch job: exit 0 after 90 seconds
//	load -unready 0@3m,1@40s               # /healthz fails (503) 40 s in every 3 min 40 s
//
// A schedule is a comma-separated list of VALUE@DURATION segments that repeats; a single
// VALUE without a duration is steady. Values are Kubernetes quantities (250m, 1.5, 96Mi).
// CPU demand is made by spinning for a share of every 10 ms slot, on as many goroutines as
// the schedule's largest value needs whole cores; memory is held as written (resident) pages.
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	cpuSlot     = 10 * time.Millisecond
	memoryTick  = 100 * time.Millisecond
	chunkBytes  = 1 << 20
	pageBytes   = 4096
	defaultRate = 64 << 20
)

func main() {
	cpuFlag := flag.String("cpu", "0", "CPU demand schedule in cores, e.g. 250m or 800m@2m,100m@4m")
	memoryFlag := flag.String("memory", "0", "memory schedule, e.g. 96Mi or 64Mi@1m,256Mi@30s")
	rateFlag := flag.String("memory-rate", "64Mi", "how fast held memory grows toward the schedule, per second")
	leakFlag := flag.String("leak", "0", "memory added per second on top of the schedule and never given back")
	listen := flag.String("listen", ":8080", "address of the /healthz endpoint; empty for none")
	report := flag.Duration("report", 10*time.Second, "how often to log the current demand")
	lifetime := flag.Duration("for", 0, "exit 0 after this long (a batch job); 0 runs until stopped")
	unreadyFlag := flag.String("unready", "0", "when /healthz fails: a schedule of 1 (failing) and 0, e.g. 0@3m,1@40s")
	flag.Parse()

	cpu, err := parseSchedule(*cpuFlag)
	check("-cpu", err)
	memory, err := parseSchedule(*memoryFlag)
	check("-memory", err)
	rate, err := parseQuantity(*rateFlag)
	check("-memory-rate", err)
	leak, err := parseQuantity(*leakFlag)
	check("-leak", err)
	unready, err := parseSchedule(*unreadyFlag)
	check("-unready", err)
	if rate <= 0 {
		check("-memory-rate", fmt.Errorf("%q must be above zero", *rateFlag))
	}

	stop := make(chan os.Signal, 1)
	// As PID 1 in its container, the process ignores signals it has no handler for.
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	start := time.Now()
	var memoryHeld atomic.Uint64
	workers := int(math.Max(1, math.Ceil(cpu.max())))
	for i := 0; i < workers; i++ {
		go spin(func() float64 { return cpu.at(time.Since(start)) / float64(workers) })
	}
	go holdMemory(start, memory, rate, leak, &memoryHeld)
	if *listen != "" {
		go serveHealth(*listen, func() bool { return unready.at(time.Since(start)) >= 0.5 })
	}
	log.Printf("load: cpu %s on %d worker(s), memory %s, rate %s/s, leak %s/s",
		*cpuFlag, workers, *memoryFlag, *rateFlag, *leakFlag)

	ticker := time.NewTicker(*report)
	defer ticker.Stop()
	var done <-chan time.Time
	if *lifetime > 0 {
		done = time.After(*lifetime)
	}
	for {
		select {
		case sig := <-stop:
			log.Printf("load: %s, exiting", sig)
			os.Exit(0)
		case <-done:
			log.Printf("load: ran for %s, done", *lifetime)
			os.Exit(0)
		case <-ticker.C:
			log.Printf("load: cpu demand %.3f cores, memory held %d MiB",
				cpu.at(time.Since(start)), memoryHeld.Load()>>20)
		}
	}
}

func check(name string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "load: %s: %v\n", name, err)
		os.Exit(2)
	}
}

// spin keeps one goroutine busy for share() of every slot and asleep for the rest.
func spin(share func() float64) {
	sink := 0
	for {
		busy := time.Duration(math.Min(1, share()) * float64(cpuSlot))
		began := time.Now()
		for time.Since(began) < busy {
			for i := 0; i < 1000; i++ {
				sink += i
			}
		}
		if rest := cpuSlot - time.Since(began); rest > 0 {
			time.Sleep(rest)
		}
		if sink == -1 {
			fmt.Println(sink)
		}
	}
}

// holdMemory keeps the scheduled amount (plus the leak so far) resident, growing at most
// rate bytes a second and releasing memory to the OS when the schedule goes down.
func holdMemory(start time.Time, schedule schedule, rate, leak float64, held *atomic.Uint64) {
	var chunks [][]byte
	leaked := 0.0
	for range time.Tick(memoryTick) {
		leaked += leak * memoryTick.Seconds()
		target := int(math.Ceil((schedule.at(time.Since(start)) + leaked) / chunkBytes))
		growth := int(math.Max(1, rate*memoryTick.Seconds()/chunkBytes))
		for n := 0; len(chunks) < target && n < growth; n++ {
			chunk := make([]byte, chunkBytes)
			for i := 0; i < len(chunk); i += pageBytes {
				chunk[i] = byte(i/pageBytes + 1) // written pages are resident: the working set grows
			}
			chunks = append(chunks, chunk)
		}
		if len(chunks) > target {
			chunks = chunks[:target:target]
			debug.FreeOSMemory()
		}
		held.Store(uint64(len(chunks)) * chunkBytes)
	}
}

// serveHealth answers /healthz: 200, or 503 while failing() (a readiness probe then fails).
func serveHealth(addr string, failing func() bool) {
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if failing() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("unready\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	log.Fatal(http.ListenAndServe(addr, nil))
}

type segment struct {
	value    float64
	duration time.Duration
}

type schedule []segment

func (s schedule) at(elapsed time.Duration) float64 {
	if len(s) == 1 {
		return s[0].value
	}
	var cycle time.Duration
	for _, seg := range s {
		cycle += seg.duration
	}
	offset := elapsed % cycle
	for _, seg := range s {
		if offset < seg.duration {
			return seg.value
		}
		offset -= seg.duration
	}
	return s[len(s)-1].value
}

func (s schedule) max() float64 {
	highest := 0.0
	for _, seg := range s {
		highest = math.Max(highest, seg.value)
	}
	return highest
}

func parseSchedule(text string) (schedule, error) {
	parts := strings.Split(text, ",")
	var result schedule
	for _, part := range parts {
		valueText, durationText, timed := strings.Cut(strings.TrimSpace(part), "@")
		value, err := parseQuantity(valueText)
		if err != nil {
			return nil, err
		}
		seg := segment{value: value}
		if timed {
			if seg.duration, err = time.ParseDuration(durationText); err != nil || seg.duration <= 0 {
				return nil, fmt.Errorf("%q: a segment lasts a positive duration like 30s or 2m", part)
			}
		} else if len(parts) > 1 {
			return nil, fmt.Errorf("%q: every segment of a cycle needs @DURATION", part)
		}
		result = append(result, seg)
	}
	return result, nil
}

var suffixes = []struct {
	suffix string
	factor float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30},
	{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"m", 1e-3},
}

// parseQuantity reads the Kubernetes quantities this program needs: a decimal number with
// an optional m, k, M, G, Ki, Mi or Gi suffix.
func parseQuantity(text string) (float64, error) {
	number, factor := strings.TrimSpace(text), 1.0
	for _, s := range suffixes {
		if strings.HasSuffix(number, s.suffix) {
			number, factor = strings.TrimSuffix(number, s.suffix), s.factor
			break
		}
	}
	value, err := strconv.ParseFloat(number, 64)
	if err != nil || value < 0 || math.IsInf(value, 0) || math.IsNaN(value) {
		return 0, fmt.Errorf("%q is not a quantity like 250m, 1.5 or 96Mi", text)
	}
	return value * factor, nil
}
