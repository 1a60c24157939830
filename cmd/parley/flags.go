package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// flagSet is one command's flags. Every flag can also be set by an
// environment variable, PARLEY_ and the flag's name in capitals with '-'
// as '_' (--data-dir is PARLEY_DATA_DIR). The command line is parsed
// first; then each flag it did not set and whose variable is present is
// set from the variable through the same flag.Value, so a value means the
// same in either place and is refused in either place. Problems are
// collected rather than returned one by one, so that an operator fixes
// them all in one round.
type flagSet struct {
	cmd    string
	fs     *flag.FlagSet
	opts   []*option // in definition order, which groups related flags in the usage
	byName map[string]*option
	errs   []error
	out    io.Writer // where -h prints the usage
	// failed is set by a value that recorded its own error, so that the
	// flag package's message for the same failure, which would repeat the
	// value, is dropped.
	failed bool
}

// option is one flag: how the usage shows it and where its value came from.
type option struct {
	name, env, typ, usage string
	// def is the default as the usage shows it; empty shows none.
	def string
	// secret options never show their value: not in the usage, not in
	// errors.
	secret bool
	// raw is the text the value was last set from (the default's text
	// until then), for messages; always empty for a secret.
	raw string
	// fromEnv: the value came from the environment, so messages name the
	// variable instead of the flag.
	fromEnv bool
	// bad: the value did not parse; it was reported, and checks skip it.
	bad bool
}

func newFlags(cmd string, out io.Writer) *flagSet {
	fs := flag.NewFlagSet("parley "+cmd, flag.ContinueOnError)
	// The flag package prints each error and the whole usage on its own;
	// parse reports instead, once, with every problem.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{cmd: cmd, fs: fs, byName: map[string]*option{}, out: out}
}

func envName(flagName string) string {
	return "PARLEY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// define registers a flag whose text set parses into the variable; str
// renders the variable for the flag package.
func (f *flagSet) define(name, typ, def, usage string, secret bool, set func(string) error, str func() string) {
	o := &option{name: name, env: envName(name), typ: typ, usage: usage, def: def, secret: secret}
	if !secret {
		o.raw = str()
	}
	f.opts = append(f.opts, o)
	f.byName[name] = o
	f.fs.Var(&value{f: f, o: o, set: set, str: str, isBool: typ == "bool"}, name, usage)
}

func (f *flagSet) string(name, def, usage string) *string {
	p := &def
	shown := ""
	if def != "" {
		shown = strconv.Quote(def)
	}
	f.define(name, "string", shown, usage, false, func(s string) error { *p = s; return nil }, func() string { return *p })
	return p
}

// secret is a string flag whose value is never shown: the usage says only
// whether its variable is set, and messages name it without its value.
// Secrets have no default but empty.
func (f *flagSet) secret(name, usage string) *string {
	p := new(string)
	f.define(name, "secret", "", usage, true, func(s string) error { *p = s; return nil }, func() string {
		if *p == "" {
			return ""
		}
		return "(set)"
	})
	return p
}

// int accepts a decimal integer, as strconv.Atoi does: no trailing text,
// no exponent, no other base (the flag package would read 010 as 8).
func (f *flagSet) int(name string, def int, usage string) *int {
	p := &def
	f.define(name, "int", strconv.Itoa(def), usage, false, func(s string) error {
		n, err := strconv.Atoi(s)
		switch {
		case errors.Is(err, strconv.ErrRange):
			return errors.New("out of range")
		case err != nil:
			return errors.New("want a decimal integer")
		}
		*p = n
		return nil
	}, func() string { return strconv.Itoa(*p) })
	return p
}

// boolean accepts exactly what strconv.ParseBool accepts.
func (f *flagSet) bool(name string, def bool, usage string) *bool {
	p := &def
	shown := ""
	if def {
		shown = "true"
	}
	f.define(name, "bool", shown, usage, false, func(s string) error {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want a boolean: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False")
		}
		*p = b
		return nil
	}, func() string { return strconv.FormatBool(*p) })
	return p
}

// duration accepts what time.ParseDuration accepts: 90s, 10m, 1h30m.
func (f *flagSet) duration(name string, def time.Duration, usage string) *time.Duration {
	p := &def
	f.define(name, "duration", def.String(), usage, false, func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("want a duration such as 500ms, 90s, 10m or 1h30m")
		}
		*p = d
		return nil
	}, func() string { return p.String() })
	return p
}

// value is the flag.Value of every option. A failed Set records its error
// with the flag or variable it came from.
type value struct {
	f      *flagSet
	o      *option
	set    func(string) error
	str    func() string
	isBool bool
}

// Set parses s into the flag's variable, for the command line and the
// environment alike.
func (v *value) Set(s string) error {
	if !v.o.secret {
		v.o.raw = s
	}
	err := v.set(s)
	if err != nil {
		v.o.bad = true
		v.f.errs = append(v.f.errs, fmt.Errorf("%s: %w", v.o.source(), err))
		v.f.failed = true
	}
	return err
}

// String is the value for the flag package; a secret's is only "(set)".
func (v *value) String() string {
	if v == nil || v.str == nil { // the flag package may call it on a zero value
		return ""
	}
	return v.str()
}

// IsBoolFlag lets a boolean be given as --name alone.
func (v *value) IsBoolFlag() bool { return v != nil && v.isBool }

// source names where o's value came from, with the value unless o is a
// secret: --lease="0s" or PARLEY_LEASE="0s".
func (o *option) source() string {
	n := "--" + o.name
	if o.fromEnv {
		n = o.env
	}
	if o.secret {
		return n
	}
	return fmt.Sprintf("%s=%q", n, o.raw)
}

// parse reads args, then the environment for every flag args did not set.
// With -h or --help among the flags it prints the usage to the command's
// output and returns flag.ErrHelp. Any other problem is recorded for err,
// so parse goes on past it.
func (f *flagSet) parse(args []string) error {
	rest := args
	for {
		f.failed = false
		err := f.fs.Parse(rest)
		if err == nil {
			break
		}
		if errors.Is(err, flag.ErrHelp) {
			f.usage(f.out)
			return flag.ErrHelp
		}
		next := f.fs.Args()
		if len(next) == len(rest) {
			// A malformed flag ("---x") is not consumed. The flag package's
			// message would repeat the argument, which may hold a secret.
			next = next[1:]
			err = errors.New("bad flag syntax: want -name, --name or --name=value")
		}
		if !f.failed {
			f.errs = append(f.errs, flagError(err))
		}
		rest = next
	}
	if n := f.fs.NArg(); n > 0 {
		// Not echoed: a secret with a space in it, unquoted, lands here.
		f.errs = append(f.errs, fmt.Errorf("%d unexpected argument(s) after the flags (not shown, they may hold a secret): quote values with spaces, and give a boolean as --flag=false", n))
	}
	onCommandLine := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { onCommandLine[fl.Name] = true })
	for _, o := range f.opts {
		v, ok := os.LookupEnv(o.env)
		if !ok || onCommandLine[o.name] {
			continue
		}
		o.fromEnv = true
		_ = f.fs.Set(o.name, v) // a failure is recorded by the value
	}
	return nil
}

// flagError rewords the flag package's messages in the --name style of
// the rest: they name a flag, never a value.
func flagError(err error) error {
	msg := err.Error()
	if n, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s", n)
	}
	if n, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s needs a value", n)
	}
	return err
}

// check records a problem with flag name's value unless ok. A value that
// did not parse was reported already and is not checked again.
func (f *flagSet) check(name string, ok bool, format string, args ...any) {
	o := f.byName[name]
	if ok || o.bad {
		return
	}
	f.errs = append(f.errs, fmt.Errorf("%s: %s", o.source(), fmt.Sprintf(format, args...)))
}

// checkErr records err, if any, as a problem with flag name's value.
func (f *flagSet) checkErr(name string, err error) {
	if err != nil {
		f.check(name, false, "%v", err)
	}
}

// fail records a problem that is not one flag's value, such as two flags
// that go together; name the flags with f.name.
func (f *flagSet) fail(err error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			f.fail(e)
		}
		return
	}
	f.errs = append(f.errs, err)
}

// name is how flag n was given: --n, or its variable if the value came
// from the environment.
func (f *flagSet) name(n string) string {
	if o := f.byName[n]; o.fromEnv {
		return o.env
	}
	return "--" + n
}

// err returns every problem recorded, or nil.
func (f *flagSet) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return &configError{cmd: f.cmd, errs: f.errs}
}

// configError is every problem found in one command's flags and
// environment. It unwraps like errors.Join, and prints one problem a line
// with a pointer to the command's usage.
type configError struct {
	cmd  string
	errs []error
}

// Error lists the problems, one a line when there are several.
func (e *configError) Error() string {
	if len(e.errs) == 1 {
		return fmt.Sprintf("%s: %v (see parley %s -h)", e.cmd, e.errs[0], e.cmd)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems (see parley %s -h):", e.cmd, len(e.errs), e.cmd)
	for _, err := range e.errs {
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns each problem, for errors.Is and errors.As.
func (e *configError) Unwrap() []error { return e.errs }

// usage prints the command's synopsis and every flag with its variable. A
// variable that is set is shown with its value, a secret's only as (set).
func (f *flagSet) usage(w io.Writer) {
	if c, ok := findCommand(f.cmd); ok {
		fmt.Fprintf(w, "usage: parley %s\n\n%s%s.\n\n", c.synopsis, strings.ToUpper(c.summary[:1]), c.summary[1:])
	}
	fmt.Fprint(w, `Every flag can also be set by the environment variable shown after it; a
flag on the command line wins. Booleans take --flag or --flag=BOOL (1, t,
true, 0, f, false, ...); integers are decimal; durations are like 90s or
1h30m. A secret's value is never shown: (set) means its variable is set.

`)
	for _, o := range f.opts {
		fmt.Fprintf(w, "  --%s", o.name)
		if o.typ != "bool" {
			fmt.Fprintf(w, " %s", o.typ)
		}
		fmt.Fprintf(w, "   %s", o.env)
		if v, ok := os.LookupEnv(o.env); ok {
			if o.secret {
				fmt.Fprint(w, " (set)")
			} else {
				fmt.Fprintf(w, "=%q", v)
			}
		}
		fmt.Fprintf(w, "\n        %s", o.usage)
		if o.def != "" {
			fmt.Fprintf(w, " (default %s)", o.def)
		}
		fmt.Fprintln(w)
	}
}
