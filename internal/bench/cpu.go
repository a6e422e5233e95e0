package bench

import (
	"time"

	"github.com/prometheus/procfs"
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
	group string // "PostgreSQL" or "RabbitMQ"
	used  time.Duration
}

var procGroups = map[string]string{"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// readHostCPU snapshots /proc; ok is false where there is none.
func readHostCPU() (h hostCPU, ok bool) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return h, false
	}
	stat, err := fs.Stat()
	if err != nil {
		return h, false
	}
	c := stat.CPUTotal // idle and iowait are not busy
	h.busy = seconds(c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal)
	h.procs = map[int]procCPU{}
	procs, _ := fs.AllProcs()
	for _, p := range procs {
		comm, err := p.Comm()
		if err != nil {
			continue
		}
		group, wanted := procGroups[comm]
		if !wanted {
			continue
		}
		if st, err := p.Stat(); err == nil {
			h.procs[p.PID] = procCPU{group: group, used: seconds(st.CPUTime())}
		}
	}
	return h, true
}

// procUsed is the CPU time (user and system) process pid has used.
func procUsed(pid int) (time.Duration, bool) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, false
	}
	st, err := p.Stat()
	if err != nil {
		return 0, false
	}
	return seconds(st.CPUTime()), true
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
