package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/gear-run/gear/pkg/cluster"
)

// Command describes one gear command once: dispatch, `gear help`,
// `gear help CMD`, `gear CMD -h` and the README's CLI block all come from
// it. Adding a command is adding one Command to a table (see Commands).
type Command struct {
	// Name is the words after "gear", e.g. "app kill". A command may share
	// its first word with others ("workers" and "workers remove").
	Name string
	// Args names the positional arguments in the usage line ("ID N"); the
	// flags are listed from the flag set, so they cannot disagree.
	Args string
	// NArgs is the exact number of positional arguments; -1 lets Run check.
	NArgs int
	// Rest says the command takes more arguments after "--" (Call.Rest).
	Rest bool
	// Group is the heading the command is listed under in `gear help`.
	Group string
	// Synopsis is one line for `gear help`; Help is the long text for
	// `gear help CMD` (optional).
	Synopsis, Help string
	// Global says which of -master, -token and -conf the command accepts
	// after its name too (they are always accepted before it).
	Global GlobalFlags
	// JSON adds a -json flag; Call.Output prints JSON when it is given.
	JSON bool
	// Daemon marks a long-running daemon: SIGINT/SIGTERM start its
	// graceful shutdown, with no time limit (see Main).
	Daemon bool
	// Flags defines the command's own flags and returns what runs once
	// they are parsed; commands without flags set Run instead.
	Flags func(fs *flag.FlagSet) Action
	Run   Action
}

// Action runs a command whose arguments and flags are parsed.
type Action func(ctx context.Context, c *Call) error

// GlobalFlags is a set of the flags every command may share.
type GlobalFlags uint8

// The global flags. ClusterFlags is what a command that talks to the
// masters accepts.
const (
	MasterFlag   GlobalFlags = 1 << iota // -master host:port,...
	TokenFlag                            // -token T
	ConfFlag                             // -conf FILE
	CAFlag                               // -ca FILE
	ClusterFlags = MasterFlag | TokenFlag | ConfFlag | CAFlag
)

// Global holds the global flags' values.
type Global struct {
	Masters string // -master, comma separated
	Token   string // -token
	Conf    string // -conf
	CA      string // -ca: verify the masters' TLS certificates, speak https
}

// MasterList is -master split at commas.
func (g Global) MasterList() []string { return splitList(g.Masters) }

func (g *Global) register(fs *flag.FlagSet, which GlobalFlags) {
	if which&MasterFlag != 0 {
		fs.StringVar(&g.Masters, "master", g.Masters, "talk to these masters, `host:port,...` (default: GEAR_MASTERS or gear.cluster.masters)")
	}
	if which&TokenFlag != 0 {
		fs.StringVar(&g.Token, "token", g.Token, "cluster `token` (default: GEAR_TOKEN or gear.auth.token)")
	}
	if which&ConfFlag != 0 {
		fs.StringVar(&g.Conf, "conf", g.Conf, "read this gear.conf `file` (default: GEAR_CONF or conf/gear.conf of the install)")
	}
	if which&CAFlag != 0 {
		fs.StringVar(&g.CA, "ca", g.CA, "verify the masters' TLS certificates against this CA `file` and speak https (default: GEAR_CA or gear.tls.ca)")
	}
}

// notApplicable explains a global flag given to a command that has no use
// for it (-master to `config check`), or returns "".
func notApplicable(cmd *Command, err error) string {
	const undefined = "flag provided but not defined: -"
	name, ok := strings.CutPrefix(err.Error(), undefined)
	if !ok {
		return ""
	}
	f, global := map[string]GlobalFlags{"master": MasterFlag, "token": TokenFlag, "conf": ConfFlag, "ca": CAFlag}[name]
	if !global || cmd.Global&f != 0 {
		return ""
	}
	return fmt.Sprintf("%s: -%s does not apply to this command (it is a global flag for the commands that need it)", cmd.Name, name)
}

// Call is one invocation of a command: its streams, the global flags and
// the parsed arguments.
type Call struct {
	Env
	Cmd    *Command
	Global Global
	Args   []string // positional arguments
	Rest   []string // arguments after "--" (only when Cmd.Rest)
	JSON   bool     // -json was given (only when Cmd.JSON)

	commands []Command // the whole registry, for help
}

// Client builds an API client from -master/-token, the env, or gear.conf.
func (c *Call) Client() (*cluster.Client, error) { return client(c.Env, c.Global) }

// Output is the JSON-or-table step every listing ends with: with -json it
// prints v as indented JSON, else table writes it for people through a
// tabwriter.
func (c *Call) Output(v any, table func(w io.Writer)) error {
	if c.JSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// show is the flag set -> client -> JSON-or-table pattern, written once:
// get fetches the value with the API client, table prints it for people.
func show[T any](get func(ctx context.Context, cl *cluster.Client, c *Call) (T, error), table func(w io.Writer, v T)) Action {
	return func(ctx context.Context, c *Call) error {
		cl, err := c.Client()
		if err != nil {
			return err
		}
		v, err := get(ctx, cl, c)
		if err != nil {
			return err
		}
		return c.Output(v, func(w io.Writer) { table(w, v) })
	}
}

// request is the pattern of the commands that change something: do makes
// one call and returns the line to print (-json is not offered).
func request(do func(ctx context.Context, cl *cluster.Client, c *Call) (string, error)) Action {
	return show(do, func(w io.Writer, msg string) { fmt.Fprintln(w, msg) })
}

// usageError is a command line the user must fix: exit code 2.
type usageError struct {
	msg   string
	cmd   *Command // whose usage to show; nil = the top level
	group string   // or the group whose subcommands to point at
}

func (u usageError) Error() string { return u.msg }

// Usagef returns a usage error (exit code 2) for the command being run.
func Usagef(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}

// dispatch finds the command args name and runs it.
func dispatch(ctx context.Context, env Env, g Global, cmds []Command, args []string) error {
	cmd, rest := lookup(cmds, args)
	if cmd == nil {
		return unknown(env, cmds, args)
	}
	call := &Call{Env: env, Cmd: cmd, Global: g, commands: cmds}
	fs := flag.NewFlagSet("gear "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	call.Global.register(fs, cmd.Global)
	if cmd.JSON {
		fs.BoolVar(&call.JSON, "json", false, "print JSON (stable: fields are only ever added)")
	}
	run := cmd.Run
	if cmd.Flags != nil {
		run = cmd.Flags(fs)
	}
	pos, extra, err := parseFlags(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		writeHelp(env.Stdout, cmds, cmd)
		return nil
	}
	if err != nil {
		if msg := notApplicable(cmd, err); msg != "" {
			return usageError{msg: msg, cmd: cmd}
		}
		return usageError{msg: fmt.Sprintf("%s: %v", cmd.Name, err), cmd: cmd}
	}
	if extra != nil && !cmd.Rest {
		return usageError{msg: fmt.Sprintf("%s: takes no arguments after --, got %q", cmd.Name, extra), cmd: cmd}
	}
	if cmd.NArgs >= 0 && len(pos) != cmd.NArgs {
		msg := fmt.Sprintf("%s: want %s", cmd.Name, cmd.Args)
		if cmd.NArgs == 0 {
			msg = fmt.Sprintf("%s: want no arguments", cmd.Name)
		}
		if len(pos) > 0 {
			msg += fmt.Sprintf(", got %q", pos)
		}
		return usageError{msg: msg, cmd: cmd}
	}
	call.Args, call.Rest = pos, extra
	err = run(ctx, call)
	var ue usageError
	if errors.As(err, &ue) && ue.cmd == nil {
		ue.cmd = cmd
		return ue
	}
	return err
}

// lookup returns the command with the longest name that args start with,
// and the arguments after that name.
func lookup(cmds []Command, args []string) (*Command, []string) {
	var best *Command
	n := 0
	for i := range cmds {
		words := strings.Fields(cmds[i].Name)
		if len(words) > len(args) || len(words) <= n || !slices.Equal(words, args[:len(words)]) {
			continue
		}
		best, n = &cmds[i], len(words)
	}
	return best, args[n:]
}

// lookupName finds a command by its exact name ("app kill").
func lookupName(cmds []Command, name string) *Command {
	for i := range cmds {
		if cmds[i].Name == name {
			return &cmds[i]
		}
	}
	return nil
}

// under lists the commands whose name starts with prefix and a space.
func under(cmds []Command, prefix string) []*Command {
	var out []*Command
	for i := range cmds {
		if strings.HasPrefix(cmds[i].Name, prefix+" ") {
			out = append(out, &cmds[i])
		}
	}
	return out
}

// unknown explains args that name no command: a group ("app") without or
// with a wrong subcommand, or help asked of a group, or nothing known.
func unknown(env Env, cmds []Command, args []string) error {
	group := args[0]
	subs := under(cmds, group)
	if len(subs) == 0 {
		return usageError{msg: fmt.Sprintf("unknown command %q", group)}
	}
	if len(args) > 1 && isHelpFlag(args[1]) {
		writeGroupHelp(env.Stdout, group, subs)
		return nil
	}
	writeGroupHelp(env.Stderr, group, subs)
	if len(args) == 1 {
		return usageError{msg: fmt.Sprintf("%s: want a subcommand", group), group: group}
	}
	return usageError{msg: fmt.Sprintf("%s: unknown subcommand %q", group, args[1]), group: group}
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// UsageLine is the command's one-line usage: name, arguments, its own
// flags (sorted) and "[-- ARGS...]".
func UsageLine(cmd *Command) string {
	var b strings.Builder
	b.WriteString(cmd.Name)
	if cmd.Args != "" {
		b.WriteString(" " + cmd.Args)
	}
	for _, f := range ownFlags(cmd) {
		b.WriteString(" [" + flagSyntax(f) + "]")
	}
	if cmd.Rest {
		b.WriteString(" [-- ARGS...]")
	}
	return b.String()
}

// ownFlags are the flags the command defines besides the global ones.
// A command that accepts only some of the global flags (a daemon, config
// check) lists those too: the top usage line promises all three.
func ownFlags(cmd *Command) []*flag.Flag {
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	if cmd.Global != ClusterFlags {
		(&Global{}).register(fs, cmd.Global)
	}
	if cmd.JSON {
		fs.Bool("json", false, "print JSON (stable: fields are only ever added)")
	}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// flagSyntax renders "-name NAME", or "-json" for a boolean flag. The
// value's name is the back-quoted word of the flag's usage, upper-cased.
func flagSyntax(f *flag.Flag) string {
	name, _ := flag.UnquoteUsage(f)
	switch name {
	case "":
		return "-" + f.Name
	case "string":
		name = f.Name
	case "int":
		name = "N"
	}
	return "-" + f.Name + " " + strings.ToUpper(name)
}

// writeFlags lists flags with their usage and non-zero defaults.
func writeFlags(w io.Writer, flags []*flag.Flag) {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, f := range flags {
		_, usage := flag.UnquoteUsage(f)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && !strings.Contains(usage, "(default") {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", flagSyntax(f), usage)
	}
	_ = tw.Flush()
}

// writeHelp prints `gear help CMD`.
func writeHelp(w io.Writer, cmds []Command, cmd *Command) {
	fmt.Fprintf(w, "usage: gear %s\n\n%s\n", UsageLine(cmd), sentence(cmd.Synopsis))
	if cmd.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.Help))
	}
	if own := ownFlags(cmd); len(own) > 0 {
		fmt.Fprintln(w, "\nflags:")
		writeFlags(w, own)
	}
	if cmd.Global == ClusterFlags {
		fs := flag.NewFlagSet("", flag.ContinueOnError)
		(&Global{}).register(fs, cmd.Global)
		var gl []*flag.Flag
		fs.VisitAll(func(f *flag.Flag) { gl = append(gl, f) })
		fmt.Fprintln(w, "\nglobal flags (accepted before or after the command):")
		writeFlags(w, gl)
	}
	if subs := under(cmds, cmd.Name); len(subs) > 0 {
		fmt.Fprintln(w, "\nsubcommands:")
		writeList(w, subs)
	}
}

func writeGroupHelp(w io.Writer, group string, subs []*Command) {
	fmt.Fprintf(w, "usage: gear %s SUBCOMMAND ...\n\nsubcommands (gear help %s SUBCOMMAND for more):\n", group, group)
	writeList(w, subs)
}

func writeList(w io.Writer, cmds []*Command) {
	for _, c := range cmds {
		fmt.Fprintf(w, "  %s\n      %s\n", UsageLine(c), c.Synopsis)
	}
}

// TopHelp is `gear help`: every command's usage line and synopsis, under
// its group, in registry order. The README's CLI block is this text.
func TopHelp(cmds []Command) string {
	var b strings.Builder
	b.WriteString("usage: gear [-master host:port,...] [-token T] [-conf FILE] [-ca FILE] COMMAND [ARGS]\n")
	var groups []string
	for _, c := range cmds {
		if !slices.Contains(groups, c.Group) {
			groups = append(groups, c.Group)
		}
	}
	for _, g := range groups {
		fmt.Fprintf(&b, "\n%s:\n", g)
		var in []*Command
		for i := range cmds {
			if cmds[i].Group == g {
				in = append(in, &cmds[i])
			}
		}
		writeList(&b, in)
	}
	b.WriteString("\n-master defaults to gear.cluster.masters of the conf file; GEAR_MASTERS, GEAR_TOKEN,\n" +
		"GEAR_CONF and GEAR_CA work too. The global flags are accepted after the command as well.\n" +
		"'gear help COMMAND' or 'gear COMMAND -h' prints a command's flags and details.\n")
	return b.String()
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
