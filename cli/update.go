package cli

import (
	"errors"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// newUpdateCommand is docker's `update`: resource limits and restart
// policy of one or more containers.
func newUpdateCommand(c *CLI) *cobra.Command {
	var memory, memorySwap, memoryRes memBytesValue
	var cpus nanoCPUsValue
	var cpuShares, cpuPeriod, cpuQuota, pidsLimit int64
	var cpusetCPUs, cpusetMems, restart string
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Update configuration of one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var u container.UpdateConfig
			u.Resources = container.Resources{Memory: memory.v, MemorySwap: memorySwap.v, MemoryReservation: memoryRes.v,
				NanoCPUs: cpus.v, CPUShares: cpuShares, CPUPeriod: cpuPeriod, CPUQuota: cpuQuota,
				CpusetCpus: cpusetCPUs, CpusetMems: cpusetMems}
			if cmd.Flags().Changed("pids-limit") {
				u.Resources.PidsLimit = &pidsLimit
			}
			if restart != "" {
				p, err := parseRestartPolicy(restart)
				if err != nil {
					return err
				}
				u.RestartPolicy = p
			}
			if cmd.Flags().NFlag() == 0 {
				return errors.New("you must provide one or more flags when using this command")
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEach(args, true, func(id string) error {
				_, err := cl.ContainerUpdate(cmd.Context(), id, client.ContainerUpdateOptions{Resources: &u.Resources, RestartPolicy: &u.RestartPolicy})
				return err
			})
		},
	}
	f := cmd.Flags()
	f.VarP(&memory, "memory", "m", "Memory limit")
	f.Var(&memorySwap, "memory-swap", "Swap limit equal to memory plus swap: -1 to enable unlimited swap")
	f.Var(&memoryRes, "memory-reservation", "Memory soft limit")
	f.Var(&cpus, "cpus", "Number of CPUs")
	f.Int64VarP(&cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	f.Int64Var(&cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	f.Int64Var(&cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	f.StringVar(&cpusetCPUs, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	f.StringVar(&cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	f.Int64Var(&pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	f.StringVar(&restart, "restart", "", "Restart policy to apply when a container exits")
	return cmd
}
