package sieve

import (
	"errors"
	"io/fs"
)

// include runs another script (RFC 6609): loaded through the Loader,
// parsed with the same options, in its own variable scope; :once skips a
// script already included, :optional a missing one. A script that
// includes itself, directly or not, is an error, and so is nesting deeper
// than MaxIncludeDepth.
func (r *run) include(n *node, f *frame) (control, error) {
	name := n.args[0].strs[0].s
	global := n.has("global")
	key := "personal:" + name
	if global {
		key = "global:" + name
	}
	if n.has("once") && r.included[key] {
		return ctlNext, nil
	}
	for _, s := range r.stack {
		if s == key {
			return ctlStop, runtimeErrorf(n.pos, "include loop: %q includes itself", name)
		}
	}
	if len(r.stack) >= r.opt.MaxIncludeDepth {
		return ctlStop, limitErrorf(n.pos, "includes nested more than %d deep", r.opt.MaxIncludeDepth)
	}
	r.includes++
	if r.includes > maxIncludes {
		return ctlStop, limitErrorf(n.pos, "more than %d includes", maxIncludes)
	}
	script, err := r.load(n, key, global, name)
	if err != nil || script == nil {
		return ctlNext, err
	}
	r.included[key] = true
	r.stack = append(r.stack, key)
	ctl, err := r.execBlock(script.cmds, &frame{script: script, name: name, vars: map[string]string{}})
	r.stack = r.stack[:len(r.stack)-1]
	if err != nil || ctl == ctlStop {
		return ctlStop, err
	}
	return ctlNext, nil // "return" ends only the included script
}

// load fetches and parses an included script once per run. It returns nil
// and no error for a missing :optional script.
func (r *run) load(n *node, key string, global bool, name string) (*Script, error) {
	if s, ok := r.loaded[key]; ok {
		return s, nil
	}
	if r.env.Loader == nil {
		return nil, runtimeErrorf(n.pos, "include %q: no script loader", name)
	}
	src, err := r.env.Loader.Load(global, name)
	if err != nil {
		if n.has("optional") && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotFound)) {
			return nil, nil
		}
		return nil, runtimeErrorf(n.pos, "include %q: %v", name, err)
	}
	s, err := Parse(src, r.opt)
	if err != nil {
		return nil, runtimeErrorf(n.pos, "include %q: %v", name, err)
	}
	r.loaded[key] = s
	return s, nil
}
