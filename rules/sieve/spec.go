package sieve

import "sort"

// capabilities lists every extension this package implements, with the
// extensions it implies (RFC 6131: "vacation-seconds" implies "vacation";
// RFC 5235: "spamtestplus" implies "spamtest").
var capabilities = map[string][]string{
	"body":                       nil, // RFC 5173
	"comparator-i;ascii-numeric": nil, // RFC 4790
	"copy":                       nil, // RFC 3894
	"date":                       nil, // RFC 5260
	"duplicate":                  nil, // RFC 7352
	"editheader":                 nil, // RFC 5293
	"encoded-character":          nil, // RFC 5228 2.4.2.4
	"enotify":                    nil, // RFC 5435, the mailto method of RFC 5436
	"envelope":                   nil, // RFC 5228 5.4
	"environment":                nil, // RFC 5183
	"ereject":                    nil, // RFC 5429
	"extracttext":                nil, // RFC 5703 7
	"fileinto":                   nil, // RFC 5228 4.1
	"foreverypart":               nil, // RFC 5703 3
	"ihave":                      nil, // RFC 5463
	"imap4flags":                 nil, // RFC 5232
	"include":                    nil, // RFC 6609
	"index":                      nil, // RFC 5260
	"mailbox":                    nil, // RFC 5490
	"mailboxid":                  nil, // RFC 9042
	"mime":                       nil, // RFC 5703 4
	"regex":                      nil, // draft-ietf-sieve-regex
	"reject":                     nil, // RFC 5429
	"relational":                 nil, // RFC 5231
	"spamtest":                   nil, // RFC 5235
	"spamtestplus":               {"spamtest"},
	"special-use":                nil,          // RFC 8579
	"subaddress":                 nil,          // RFC 5233
	"vacation":                   nil,          // RFC 5230
	"vacation-seconds":           {"vacation"}, // RFC 6131
	"variables":                  nil,          // RFC 5229
	"virustest":                  nil,          // RFC 5235
}

// implicitCapabilities may be required but need no require: the two
// comparators every implementation has (RFC 5228 2.7.3).
var implicitCapabilities = map[string]bool{
	"comparator-i;octet":         true,
	"comparator-i;ascii-casemap": true,
}

// Extensions returns the capability names this package supports, sorted:
// the list ManageSieve's SIEVE capability advertises.
func Extensions() []string {
	out := make([]string, 0, len(capabilities))
	for name := range capabilities {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// tagSpec describes a tagged argument of a command or test.
type tagSpec struct {
	arg   argKind // the parameter the tag takes, argNone for a flag
	ext   string  // the extension that must be required for the tag ("" = none beyond the command's)
	group string  // tags of one group exclude each other ("" = no group)
}

// cmdSpec describes a command or test: its extension, tags and positional
// arguments (RFC 5228 section 2.6 and each extension's syntax).
type cmdSpec struct {
	test     bool
	ext      []string // one of these must be required ("" or nil = core)
	tags     map[string]tagSpec
	args     []argKind // positional arguments in order
	optLead  int       // how many leading positional arguments may be left out
	optTail  int       // how many trailing positional arguments may be left out
	testArgs int       // 0: none, 1: exactly one test, -1: a test list
	block    bool      // takes a block
	match    bool      // a match test: comparator and match type go into a matcher
}

// Tag groups shared by many tests.
var (
	comparatorTags = map[string]tagSpec{"comparator": {arg: argString, group: "comparator"}}
	matchTypeTags  = map[string]tagSpec{
		"is":       {group: "match"},
		"contains": {group: "match"},
		"matches":  {group: "match"},
		"regex":    {group: "match", ext: "regex"},
		"count":    {arg: argString, group: "match", ext: "relational"},
		"value":    {arg: argString, group: "match", ext: "relational"},
	}
	addressPartTags = map[string]tagSpec{
		"all":       {group: "addrpart"},
		"localpart": {group: "addrpart"},
		"domain":    {group: "addrpart"},
		"user":      {group: "addrpart", ext: "subaddress"},
		"detail":    {group: "addrpart", ext: "subaddress"},
	}
	indexTags = map[string]tagSpec{
		"index": {arg: argNumber, ext: "index"},
		"last":  {ext: "index"},
	}
	// RFC 5703 4: the tests that may look at a MIME part's header.
	mimeTags = map[string]tagSpec{
		"mime":     {ext: "mime"},
		"anychild": {ext: "mime"},
	}
	// RFC 5703 4.1: what of a structured MIME field the header test sees.
	mimeOptionTags = map[string]tagSpec{
		"type":        {ext: "mime", group: "mimeopt"},
		"subtype":     {ext: "mime", group: "mimeopt"},
		"contenttype": {ext: "mime", group: "mimeopt"},
		"param":       {arg: argList, ext: "mime", group: "mimeopt"},
	}
	// The modifiers of set (RFC 5229 4) that extracttext takes as well
	// (RFC 5703 7); the group is the precedence. :encodeurl is RFC 5435 6.
	modifierTags = map[string]tagSpec{
		"lower": {group: "40"}, "upper": {group: "40"}, "lowerfirst": {group: "30"}, "upperfirst": {group: "30"},
		"quotewildcard": {group: "20"}, "quoteregex": {group: "20", ext: "regex"},
		"encodeurl": {group: "15", ext: "enotify"}, "length": {group: "10"},
	}
)

func tags(sets ...map[string]tagSpec) map[string]tagSpec {
	out := map[string]tagSpec{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}

// specs is every command and test the interpreter knows.
var specs = map[string]*cmdSpec{
	// RFC 5228 control commands.
	"require": {args: []argKind{argList}},
	"if":      {testArgs: 1, block: true},
	"elsif":   {testArgs: 1, block: true},
	"else":    {block: true},
	"stop":    {},
	// RFC 5228 actions and their extensions.
	"keep":     {tags: map[string]tagSpec{"flags": {arg: argList, ext: "imap4flags"}}},
	"discard":  {},
	"redirect": {tags: map[string]tagSpec{"copy": {ext: "copy"}}, args: []argKind{argString}},
	"fileinto": {ext: []string{"fileinto"}, args: []argKind{argString}, tags: map[string]tagSpec{
		"copy": {ext: "copy"}, "flags": {arg: argList, ext: "imap4flags"}, "create": {ext: "mailbox"},
		"specialuse": {arg: argString, ext: "special-use"}, "mailboxid": {arg: argString, ext: "mailboxid"},
	}},
	"reject":  {ext: []string{"reject"}, args: []argKind{argString}},
	"ereject": {ext: []string{"ereject"}, args: []argKind{argString}},
	"vacation": {ext: []string{"vacation"}, args: []argKind{argString}, tags: map[string]tagSpec{
		"days": {arg: argNumber, group: "period"}, "seconds": {arg: argNumber, group: "period", ext: "vacation-seconds"},
		"subject": {arg: argString}, "from": {arg: argString}, "addresses": {arg: argList},
		"mime": {}, "handle": {arg: argString},
	}},
	// RFC 5232 imap4flags.
	"setflag":    {ext: []string{"imap4flags"}, args: []argKind{argString, argList}, optLead: 1},
	"addflag":    {ext: []string{"imap4flags"}, args: []argKind{argString, argList}, optLead: 1},
	"removeflag": {ext: []string{"imap4flags"}, args: []argKind{argString, argList}, optLead: 1},
	// RFC 5229 variables.
	"set": {ext: []string{"variables"}, args: []argKind{argString, argString}, tags: modifierTags},
	// RFC 6609 include.
	"include": {ext: []string{"include"}, args: []argKind{argString}, tags: map[string]tagSpec{
		"personal": {group: "location"}, "global": {group: "location"}, "once": {}, "optional": {},
	}},
	"return": {ext: []string{"include"}},
	"global": {ext: []string{"include"}, args: []argKind{argList}},
	// RFC 5293 editheader.
	"addheader": {ext: []string{"editheader"}, args: []argKind{argString, argString}, tags: map[string]tagSpec{"last": {}}},
	"deleteheader": {ext: []string{"editheader"}, args: []argKind{argString, argList}, optTail: 1, match: true,
		tags: tags(comparatorTags, matchTypeTags, map[string]tagSpec{"index": {arg: argNumber}, "last": {}})},
	// RFC 5463 ihave.
	"error": {ext: []string{"ihave"}, args: []argKind{argString}},
	// RFC 5703 foreverypart and extracttext.
	"foreverypart": {ext: []string{"foreverypart"}, block: true, tags: map[string]tagSpec{"name": {arg: argString}}},
	"break":        {ext: []string{"foreverypart"}, tags: map[string]tagSpec{"name": {arg: argString}}},
	"extracttext": {ext: []string{"extracttext"}, args: []argKind{argString},
		tags: tags(modifierTags, map[string]tagSpec{"first": {arg: argNumber}})},
	// RFC 5435 enotify.
	"notify": {ext: []string{"enotify"}, args: []argKind{argString}, tags: map[string]tagSpec{
		"from": {arg: argString}, "importance": {arg: argString}, "options": {arg: argList}, "message": {arg: argString},
	}},

	// RFC 5228 tests.
	"address": {test: true, match: true, args: []argKind{argList, argList}, tags: tags(comparatorTags, matchTypeTags, addressPartTags, indexTags, mimeTags)},
	"header": {test: true, match: true, args: []argKind{argList, argList},
		tags: tags(comparatorTags, matchTypeTags, indexTags, mimeTags, mimeOptionTags)},
	"envelope": {test: true, match: true, ext: []string{"envelope"}, args: []argKind{argList, argList},
		tags: tags(comparatorTags, matchTypeTags, addressPartTags)},
	"exists": {test: true, args: []argKind{argList}, tags: mimeTags},
	"size": {test: true, args: []argKind{argNumber}, tags: map[string]tagSpec{
		"over": {group: "size"}, "under": {group: "size"},
	}},
	"true":  {test: true},
	"false": {test: true},
	"not":   {test: true, testArgs: 1},
	"allof": {test: true, testArgs: -1},
	"anyof": {test: true, testArgs: -1},
	// Extension tests.
	"body": {test: true, match: true, ext: []string{"body"}, args: []argKind{argList}, tags: tags(comparatorTags, matchTypeTags,
		map[string]tagSpec{"raw": {group: "transform"}, "content": {arg: argList, group: "transform"}, "text": {group: "transform"}})},
	"string":  {test: true, match: true, ext: []string{"variables"}, args: []argKind{argList, argList}, tags: tags(comparatorTags, matchTypeTags)},
	"hasflag": {test: true, match: true, ext: []string{"imap4flags"}, args: []argKind{argList, argList}, optLead: 1, tags: tags(comparatorTags, matchTypeTags)},
	"date": {test: true, match: true, ext: []string{"date"}, args: []argKind{argString, argString, argList},
		tags: tags(comparatorTags, matchTypeTags, indexTags, map[string]tagSpec{"zone": {arg: argString, group: "zone"}, "originalzone": {group: "zone"}})},
	"currentdate": {test: true, match: true, ext: []string{"date"}, args: []argKind{argString, argList},
		tags: tags(comparatorTags, matchTypeTags, map[string]tagSpec{"zone": {arg: argString}})},
	"mailboxexists": {test: true, ext: []string{"mailbox"}, args: []argKind{argList}},
	"environment":   {test: true, match: true, ext: []string{"environment"}, args: []argKind{argString, argList}, tags: tags(comparatorTags, matchTypeTags)},
	"duplicate": {test: true, ext: []string{"duplicate"}, tags: map[string]tagSpec{
		"handle": {arg: argString}, "header": {arg: argString, group: "dupmatch"}, "uniqueid": {arg: argString, group: "dupmatch"},
		"seconds": {arg: argNumber}, "last": {},
	}},
	"spamtest": {test: true, match: true, ext: []string{"spamtest", "spamtestplus"}, args: []argKind{argString},
		tags: tags(comparatorTags, matchTypeTags, map[string]tagSpec{"percent": {ext: "spamtestplus"}})},
	"virustest":           {test: true, match: true, ext: []string{"virustest"}, args: []argKind{argString}, tags: tags(comparatorTags, matchTypeTags)},
	"ihave":               {test: true, ext: []string{"ihave"}, args: []argKind{argList}},
	"valid_notify_method": {test: true, ext: []string{"enotify"}, args: []argKind{argList}},
	"notify_method_capability": {test: true, match: true, ext: []string{"enotify"}, args: []argKind{argString, argString, argList},
		tags: tags(comparatorTags, matchTypeTags)},
	"specialuse_exists": {test: true, ext: []string{"special-use"}, args: []argKind{argString, argList}, optLead: 1},
	"mailboxidexists":   {test: true, ext: []string{"mailboxid"}, args: []argKind{argList}},
}
