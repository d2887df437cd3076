// Linearizability checker for the nemesis suite's register history (tests/nemesis.rs), with
// Porcupine (github.com/anishathalye/porcupine, maintained, used by MIT 6.5840 and etcd's
// robustness tests).
//
// Usage: go run . HISTORY.json [VISUALIZATION.html] [TIMEOUT_SECONDS]
//
// HISTORY.json is a list of operations on string registers:
//
//	{"client": 3, "key": "r1", "op": "w", "value": "c3-17", "call": 120, "ret": 450}
//
// times in nanoseconds since the run began; "ret": null is a write whose outcome is unknown
// (timed out, or refused in a way that does not prove it was not applied): it may take effect
// at any time after its call, so it gets a return time after everything else. Reads that
// failed are not in the history (they change nothing); a read of a key never written is "".
//
// Exit status: 0 linearizable, 1 not linearizable (the visualization shows where), 2 the check
// timed out, 3 bad input.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

type record struct {
	Client int    `json:"client"`
	Key    string `json:"key"`
	Op     string `json:"op"`
	Value  string `json:"value"`
	Call   int64  `json:"call"`
	Ret    *int64 `json:"ret"`
}

type input struct {
	key   string
	write bool
	value string
}

type output struct {
	value   string
	unknown bool
}

var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			key := op.Input.(input).key
			if _, seen := byKey[key]; !seen {
				keys = append(keys, key)
			}
			byKey[key] = append(byKey[key], op)
		}
		var parts [][]porcupine.Operation
		for _, key := range keys {
			parts = append(parts, byKey[key])
		}
		return parts
	},
	Init: func() interface{} { return "" },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		i, o := in.(input), out.(output)
		if i.write {
			return true, i.value
		}
		return o.value == state.(string), state
	},
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(input), out.(output)
		if i.write {
			if o.unknown {
				return fmt.Sprintf("put(%s, %q) -> ?", i.key, i.value)
			}
			return fmt.Sprintf("put(%s, %q)", i.key, i.value)
		}
		return fmt.Sprintf("get(%s) -> %q", i.key, o.value)
	},
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: checker HISTORY.json [VISUALIZATION.html] [TIMEOUT_SECONDS]")
		os.Exit(3)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "read the history %s: %v\n", os.Args[1], err)
		os.Exit(3)
	}
	var records []record
	if err := json.Unmarshal(data, &records); err != nil {
		fmt.Fprintf(os.Stderr, "the history %s is not a JSON list of operations: %v\n", os.Args[1], err)
		os.Exit(3)
	}
	timeout := 120 * time.Second
	if len(os.Args) > 3 {
		if seconds, err := strconv.Atoi(os.Args[3]); err == nil {
			timeout = time.Duration(seconds) * time.Second
		}
	}
	var last int64
	for _, r := range records {
		if r.Ret != nil && *r.Ret > last {
			last = *r.Ret
		}
		if r.Call > last {
			last = r.Call
		}
	}
	unknownReturn := last + int64(time.Hour)
	ops := make([]porcupine.Operation, 0, len(records))
	unknown := 0
	for n, r := range records {
		op := porcupine.Operation{ClientId: r.Client, Call: r.Call, Input: input{key: r.Key, write: r.Op == "w", value: r.Value}}
		switch {
		case r.Ret != nil:
			op.Return = *r.Ret
			op.Output = output{value: r.Value}
		case r.Op == "w":
			op.Return = unknownReturn
			op.Output = output{unknown: true}
			unknown++
		default:
			fmt.Fprintf(os.Stderr, "operation %d: a read without a return time\n", n)
			os.Exit(3)
		}
		ops = append(ops, op)
	}
	result, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	fmt.Printf("{\"operations\": %d, \"unknownWrites\": %d, \"result\": %q}\n", len(ops), unknown, result)
	switch result {
	case porcupine.Ok:
		os.Exit(0)
	case porcupine.Illegal:
		if len(os.Args) > 2 {
			if err := porcupine.VisualizePath(model, info, os.Args[2]); err != nil {
				fmt.Fprintf(os.Stderr, "write the visualization: %v\n", err)
			} else {
				fmt.Fprintf(os.Stderr, "not linearizable: see %s\n", os.Args[2])
			}
		}
		os.Exit(1)
	default:
		os.Exit(2)
	}
}
