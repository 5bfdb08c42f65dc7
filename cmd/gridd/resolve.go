package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Errors about settings wrap one of these, so that callers and tests can
// tell the kinds apart without reading messages.
var (
	// errBadValue: a value does not parse as the setting's type.
	errBadValue = errors.New("invalid value")
	// errUnknownKey: the config file has a key that is not a setting.
	errUnknownKey = errors.New("unknown key")
	// errConfigFile: the config file is not a YAML mapping of settings.
	errConfigFile = errors.New("bad config file")
	// errInvalid: a value parses but is not allowed (validate).
	errInvalid = errors.New("invalid setting")
)

// origin is where a setting's value came from, so that an error about the
// value points at the place a person has to fix.
type origin struct {
	kind string // "flag", "env", "file" or "" for the default
	file string
	line int
}

func (o origin) describe(name string) string {
	switch o.kind {
	case "flag":
		return "flag --" + name
	case "env":
		return "environment variable " + envName(name)
	case "file":
		return fmt.Sprintf("config file %s line %d, key %q", o.file, o.line, name)
	default:
		return "default " + name
	}
}

// fileValue is one key of the config file.
type fileValue struct {
	line   int
	values []string
}

// settable reports whether name is one of gridd's settings, as opposed to
// cobra's --help or the --config flag itself.
func settable(fs *pflag.FlagSet, name string) bool {
	return name != configFlag && name != "help" && fs.Lookup(name) != nil
}

// resolve fills every setting not given as a flag from the environment, and
// failing that from the config file: flag > env > file > default. It
// returns where each setting came from.
func resolve(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) (map[string]origin, error) {
	path := ""
	if f := fs.Lookup(configFlag); f.Changed {
		path = f.Value.String()
	} else if v, ok := lookupEnv(envName(configFlag)); ok {
		path = v
	}
	var file map[string]fileValue
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if file, err = parseConfigFile(fs, path, data); err != nil {
			return nil, err
		}
	}
	return apply(fs, lookupEnv, path, file)
}

func apply(fs *pflag.FlagSet, lookupEnv func(string) (string, bool), path string, file map[string]fileValue) (map[string]origin, error) {
	origins := make(map[string]origin)
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || !settable(fs, f.Name) {
			return
		}
		if f.Changed {
			origins[f.Name] = origin{kind: "flag"}
			return
		}
		if v, ok := lookupEnv(envName(f.Name)); ok {
			o := origin{kind: "env"}
			origins[f.Name] = o
			err = setValue(f, o, v)
			return
		}
		if fv, ok := file[f.Name]; ok {
			o := origin{kind: "file", file: path, line: fv.line}
			origins[f.Name] = o
			for _, v := range fv.values {
				if err = setValue(f, o, v); err != nil {
					return
				}
			}
		}
	})
	return origins, err
}

func setValue(f *pflag.Flag, o origin, v string) error {
	if err := f.Value.Set(v); err != nil {
		return fmt.Errorf("%s: %w %q: %s", o.describe(f.Name), errBadValue, v, wantFor(f, err))
	}
	return nil
}

// wantFor says what a setting accepts, in place of strconv's wording.
func wantFor(f *pflag.Flag, err error) string {
	if errors.Is(err, strconv.ErrRange) {
		return "out of range"
	}
	switch f.Value.Type() {
	case "int":
		return "want an integer"
	case "uint64":
		return "want a whole number, 0 or more"
	case "duration":
		return "want a duration such as 500ms, 2s or 1m30s"
	case "stringSlice":
		return "want addresses separated by commas"
	}
	return err.Error()
}

// parseConfigFile reads a YAML mapping of setting names to values. It
// rejects what it cannot act on (unknown keys, lists for single values,
// several documents) rather than guess, and names the line.
func parseConfigFile(fs *pflag.FlagSet, path string, data []byte) (map[string]fileValue, error) {
	fail := func(line int, format string, args ...any) error {
		where := "config file " + path
		if line > 0 {
			where += " line " + strconv.Itoa(line)
		}
		return fmt.Errorf("%s: %w: %s", where, errConfigFile, fmt.Sprintf(format, args...))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, fail(0, "%s", oneLine(err.Error()))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fail(extra.Line, "holds more than one YAML document; put every setting in one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "want setting names and values, one per line (data-dir: d1)")
	}
	out := make(map[string]fileValue)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fail(k.Line, "a key must be a setting name such as data-dir")
		}
		if prev, dup := out[k.Value]; dup {
			return nil, fail(k.Line, "key %q is already set on line %d", k.Value, prev.line)
		}
		if !settable(fs, k.Value) {
			return nil, unknownKey(fs, path, k)
		}
		values, err := scalarValues(fs.Lookup(k.Value), v)
		if err != nil {
			return nil, fail(k.Line, "key %q: %s", k.Value, err)
		}
		out[k.Value] = fileValue{line: k.Line, values: values}
	}
	return out, nil
}

// scalarValues returns the value (or the list's values, for list settings)
// of a YAML node.
func scalarValues(f *pflag.Flag, v *yaml.Node) ([]string, error) {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	isList := f.Value.Type() == "stringSlice"
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		return nil, errors.New(`has no value; write "" for an empty one`)
	case v.Kind == yaml.ScalarNode:
		return []string{v.Value}, nil
	case v.Kind == yaml.SequenceNode && isList:
		var out []string
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
				return nil, fmt.Errorf("line %d: want a plain value in the list", e.Line)
			}
			out = append(out, e.Value)
		}
		if len(out) == 0 {
			// An empty list still has to override env-less defaults.
			out = []string{""}
		}
		return out, nil
	case v.Kind == yaml.SequenceNode:
		return nil, errors.New("takes one value, not a list")
	default:
		return nil, errors.New("takes a plain value, not a mapping")
	}
}

// unknownKey names the key and, when the mistake is a likely one (data_dir,
// Data-Dir, a typo), the setting that was probably meant.
func unknownKey(fs *pflag.FlagSet, path string, k *yaml.Node) error {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if settable(fs, f.Name) {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	hint := ""
	if k.Value == configFlag {
		hint = " (a config file cannot name another one)"
	} else if s := closest(k.Value, names); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		hint = " (settings are: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Errorf("config file %s line %d: %w %q%s", path, k.Line, errUnknownKey, k.Value, hint)
}

// closest returns the name nearest to key if it is near enough to be the
// obvious intent, or "".
func closest(key string, names []string) string {
	norm := strings.ToLower(strings.ReplaceAll(key, "_", "-"))
	best, bestDist := "", 3
	for _, n := range names {
		if n == norm {
			return n
		}
		if d := editDistance(norm, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // far apart, and no quadratic work on fuzzed input
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// oneLine keeps an error on the single line gridd prints when it fails.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
