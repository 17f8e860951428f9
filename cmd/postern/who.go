package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"postern/internal/netserve"
	"postern/policy"
	"postern/server"
)

// runWho is doveadm who: the IMAP, POP3 and SMAP sessions of the running
// server, grouped by user or one a line.
func runWho(e *env, args []string) int {
	fs := newFlags(e, "who", "[--json] [-1] [USER-MASK [IP[/BITS]]]", `
Lists the IMAP, POP3 and SMAP sessions of the running server, as doveadm who
does for Dovecot. By default one line per user and protocol: the user, the
number of sessions, the protocol and the client addresses. With -1, one line
per session: user (- before login), protocol, client, listener, TLS, since
when, the selected folder, and "proxied" for a session relayed to another
mailbox host. USER-MASK may use shell wildcards (*, ?, [...]); IP[/BITS]
keeps the sessions from that address or network. The server is asked over
its control socket (DATADIR/control.sock); only root and the server's user
may ask.`)
	asJSON := fs.Bool("json", false, "print the sessions as a JSON array")
	one := fs.Bool("1", false, "one line per session")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	infos, code := askSessions(e, "who", fs.Args())
	if code != 0 {
		return code
	}
	switch {
	case *asJSON:
		json.NewEncoder(e.stdout).Encode(infos)
	case *one:
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tPROTO\tCLIENT\tLISTENER\tTLS\tSINCE\tMAILBOX")
		for _, i := range infos {
			user, tls, mbox := i.User, "no", i.Mailbox
			if user == "" {
				user = "-"
			}
			if i.TLS {
				tls = "yes"
			}
			if i.Proxied {
				mbox = "(proxied)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", user, i.Protocol, i.Remote, i.Local, tls,
				i.Since.Local().Format(time.DateTime), mbox)
		}
		tw.Flush()
	default:
		printWhoGrouped(e, infos)
	}
	return 0
}

// printWhoGrouped prints doveadm who's default form: user, count,
// protocol, (addresses).
func printWhoGrouped(e *env, infos []netserve.SessionInfo) {
	type key struct{ user, proto string }
	groups := map[key][]string{}
	for _, i := range infos {
		user := i.User
		if user == "" {
			user = "-"
		}
		k := key{user, i.Protocol}
		groups[k] = append(groups[k], i.RemoteIP().String())
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].user != keys[b].user {
			return keys[a].user < keys[b].user
		}
		return keys[a].proto < keys[b].proto
	})
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\t#\tPROTO\tCLIENTS")
	for _, k := range keys {
		ips := groups[k]
		sort.Strings(ips)
		ips = slices.Compact(ips)
		fmt.Fprintf(tw, "%s\t%d\t%s\t(%s)\n", k.user, len(groups[k]), k.proto, strings.Join(ips, " "))
	}
	tw.Flush()
}

// runKick is doveadm kick: ends the sessions of the users the mask
// selects, optionally only those from one address or network.
func runKick(e *env, args []string) int {
	fs := newFlags(e, "kick", "[--json] USER-MASK [IP[/BITS]]", `
Ends the IMAP, POP3 and SMAP sessions of the users USER-MASK selects (shell
wildcards: *, ?, [...]), optionally only those from IP or the network
IP/BITS, as doveadm kick does for Dovecot. An empty mask ("") with a network
ends every session from it, logged in or not. Each session is told why
("* BYE disconnected by the administrator", POP3 "-ERR ..."), at once when
it waits for a command or idles, otherwise after the command it is running;
one still busy after 5 seconds is cut. A POP3 session kicked this way
deletes nothing. Prints the sessions kicked; exits 1 when there were none.
Use it after disabling an account or changing its password, to end the
sessions that logged in before. The server is asked over its control socket
(DATADIR/control.sock).`)
	asJSON := fs.Bool("json", false, "print the sessions kicked as a JSON array")
	if code, done := parseFlags(e, fs, args); done {
		return code
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(e.stderr, "postern kick: want USER-MASK [IP[/BITS]]")
		return 64
	}
	infos, code := askSessions(e, "kick", fs.Args())
	if code != 0 {
		return code
	}
	if *asJSON {
		json.NewEncoder(e.stdout).Encode(infos)
	} else {
		for _, i := range infos {
			user := i.User
			if user == "" {
				user = "-"
			}
			fmt.Fprintf(e.stdout, "kicked %s %s %s\n", user, i.Protocol, i.Remote)
		}
	}
	if len(infos) == 0 {
		fmt.Fprintln(e.stderr, "postern kick: no session matched")
		return 1
	}
	return 0
}

// askSessions runs who or kick in the running server.
func askSessions(e *env, command string, args []string) ([]netserve.SessionInfo, int) {
	name := "postern " + command
	if len(args) > 2 {
		fmt.Fprintf(e.stderr, "%s: want [USER-MASK [IP[/BITS]]]\n", name)
		return nil, 64
	}
	var mask, network string
	if len(args) > 0 {
		mask = args[0]
	}
	if len(args) > 1 {
		network = args[1]
	}
	if _, err := netserve.ParseMatch(mask, network); err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", name, err)
		return nil, 64
	}
	cfg, err := policy.Load(e.configDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: configuration:\n%v\n", name, err)
		return nil, 78
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reply, err := server.Control(ctx, cfg.DataDir, server.ControlRequest{Command: command, Args: args})
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", name, err)
		return nil, 69
	}
	if reply.Status != 0 {
		fmt.Fprintf(e.stderr, "%s: %s", name, reply.Stderr)
		return nil, reply.Status
	}
	var infos []netserve.SessionInfo
	if err := json.Unmarshal([]byte(reply.Stdout), &infos); err != nil {
		fmt.Fprintf(e.stderr, "%s: the server's answer: %v\n", name, err)
		return nil, 70
	}
	return infos, 0
}
