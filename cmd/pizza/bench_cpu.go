package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// hostCPU is what /proc says about this host's CPU at one moment: the time every core spent
// busy, and the time each PostgreSQL and RabbitMQ process has used. Between two snapshots it
// gives the bench the whole machine's CPU per order, and the database's and the broker's shares,
// when they run on this host: steadier measures than throughput on a shared machine.
type hostCPU struct {
	busy  time.Duration
	procs map[int]procCPU // by pid
}

type procCPU struct {
	group string // "postgres" or "rabbitmq"
	used  time.Duration
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on every Linux this runs on).
const clockTick = 10 * time.Millisecond

var procGroups = map[string]string{"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}

// readHostCPU snapshots /proc; ok is false where there is no /proc/stat.
func readHostCPU() (h hostCPU, ok bool) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return h, false
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return h, false
	}
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		h.busy += time.Duration(n) * clockTick
	}
	h.procs = map[int]procCPU{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		comm, err := os.ReadFile(dir + "/comm")
		if err != nil {
			continue
		}
		group, wanted := procGroups[strings.TrimSpace(string(comm))]
		if !wanted {
			continue
		}
		used, ok := procUsed(dir)
		if !ok {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(dir))
		h.procs[pid] = procCPU{group: group, used: used}
	}
	return h, true
}

// procUsed is the CPU time (user and system) a process has used, from its /proc directory.
func procUsed(dir string) (time.Duration, bool) {
	st, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0, false
	}
	// Fields after the parenthesised command: state is the 3rd field, utime the 14th.
	_, rest, found := bytes.Cut(st, []byte(") "))
	fields := strings.Fields(string(rest))
	if !found || len(fields) < 13 {
		return 0, false
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, true
}

// since is the CPU used between an earlier snapshot and h: the machine's busy time, and by
// group the time of the processes seen at the end (a process started in between counts whole;
// one that ended in between is missed).
func (h hostCPU) since(before hostCPU) (busy time.Duration, byGroup map[string]time.Duration) {
	byGroup = map[string]time.Duration{}
	for pid, p := range h.procs {
		used := p.used
		if b, ok := before.procs[pid]; ok && b.group == p.group {
			used -= b.used
		}
		byGroup[p.group] += used
	}
	return h.busy - before.busy, byGroup
}
