package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/gridd/gridd/jepsen/nemesis"
)

// compose drives docker-compose for the cluster the harness starts itself.
type compose struct {
	run     nemesis.Runner
	bin     string // "docker-compose" (v1) or "docker" with the compose plugin
	file    string
	project string
	// services are the gridd node services, started without the worker
	// service: the harness runs its own workers.
	services []string
}

func (c *compose) args(a ...string) []string {
	base := []string{"-p", c.project, "-f", c.file}
	if c.bin == "docker" {
		base = append([]string{"compose"}, base...)
	}
	return append(base, a...)
}

// existing lists the containers among names that exist now, running or not.
func existing(ctx context.Context, run nemesis.Runner, names []string) ([]string, error) {
	var found []string
	for _, n := range names {
		out, err := run(ctx, "docker", "ps", "-a", "-q", "-f", "name=^/?"+n+"$")
		if err != nil {
			return nil, fmt.Errorf("docker ps: %w", err)
		}
		if strings.TrimSpace(out) != "" {
			found = append(found, n)
		}
	}
	return found, nil
}

// up starts the node services from empty volumes.
func (c *compose) up(ctx context.Context) error {
	if _, err := c.run(ctx, c.bin, c.args("down", "-v", "--remove-orphans")...); err != nil {
		return fmt.Errorf("compose down before up: %w", err)
	}
	if _, err := c.run(ctx, c.bin, c.args(append([]string{"up", "-d", "--force-recreate", "--renew-anon-volumes"}, c.services...)...)...); err != nil {
		return fmt.Errorf("compose up: %w", err)
	}
	return nil
}

// down removes the containers, network and volumes the harness created.
func (c *compose) down(ctx context.Context) error {
	if _, err := c.run(ctx, c.bin, c.args("down", "-v", "--remove-orphans", "-t", "5")...); err != nil {
		return fmt.Errorf("compose down: %w", err)
	}
	return nil
}
