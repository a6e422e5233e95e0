package graph

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/1588-pizza/pizza/errs"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// shapeLimits refuses operations that are too deep, too large once fragments are expanded, or
// use too many aliases; mutations over GET; subscriptions anywhere but a websocket. It runs after
// validation and before the complexity limit (whose walk expands fragments) and any resolver.
//
// Introspection (the __schema and __type fields, with everything below them) is measured against
// bounds of its own rather than maxDepth: the standard introspection query (graphql-js's
// getIntrospectionQuery, which every common tool sends) is 15 levels deep, its ofType chains
// nesting 9 deep. Its depth may reach maxIntrospectionDepth, and along any path it may go through
// at most maxIntrospectionLists of the fields listing types or their members (__Schema.types,
// __Type.fields, inputFields, interfaces, possibleTypes): the standard query goes through two
// (types, then fields). So an answer is at most the size of the schema times the depth of its
// type wrappers; types { fields { type { fields ... } } } would grow as a power of it.
type shapeLimits struct {
	maxDepth, maxAliases, maxFields int
	noIntrospection                 bool
}

// The bounds of introspection (see shapeLimits). The depth leaves room beyond the standard
// query's 15 for tools that nest ofType a little deeper; the document limits' nesting bound (32)
// applies before it.
const (
	maxIntrospectionDepth = 20
	maxIntrospectionLists = 2
)

// methodWebsocket marks operations arriving on a websocket (its upgrade request is a GET).
const methodWebsocket = "WEBSOCKET"

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = shapeLimits{}

func (shapeLimits) ExtensionName() string                   { return "ShapeLimits" }
func (shapeLimits) Validate(graphql.ExecutableSchema) error { return nil }
func (l shapeLimits) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	op := oc.Doc.Operations.ForName(oc.OperationName)
	if op == nil {
		return nil
	}
	method := httpMethod(ctx)
	if op.Operation == ast.Subscription && method != methodWebsocket {
		return coded(errs.BadUserInput, "subscriptions need a websocket (graphql-transport-ws)")
	}
	if op.Operation != ast.Query && method == http.MethodGet {
		err := coded(errs.BadUserInput, "%s operations are not allowed over GET; use POST", op.Operation)
		err.Rule = ruleMutationOverGET // 405
		return err
	}
	if l.noIntrospection && introspects(op.SelectionSet) {
		return coded(errs.BadUserInput, "introspection is disabled")
	}
	m := measurer{memo: map[string]shape{}, visiting: map[string]bool{}}
	sh := m.set(op.SelectionSet)
	switch {
	case sh.fields > l.maxFields:
		return coded(errs.BadUserInput, "operation selects %d fields once fragments are expanded; at most %d are allowed", sh.fields, l.maxFields)
	case sh.depth > l.maxDepth:
		return coded(errs.BadUserInput, "operation is %d levels deep; at most %d are allowed", sh.depth, l.maxDepth)
	case sh.introspectionLists > maxIntrospectionLists:
		return coded(errs.BadUserInput, "introspection nests lists of types and their members (types, fields, inputFields, "+
			"interfaces, possibleTypes) %d deep; at most %d are allowed", sh.introspectionLists, maxIntrospectionLists)
	case sh.introspectionDepth > maxIntrospectionDepth:
		return coded(errs.BadUserInput, "introspection is %d levels deep; at most %d are allowed", sh.introspectionDepth, maxIntrospectionDepth)
	case sh.aliases > l.maxAliases:
		return coded(errs.BadUserInput, "operation uses %d aliases; at most %d are allowed", sh.aliases, l.maxAliases)
	}
	// An anonymous caller (or a websocket whose token has expired since) may only introspect:
	// anything else is a request error, UNAUTHENTICATED like a refused token (see httpTransport).
	if _, err := authenticated(ctx); err != nil && selectsData(op.SelectionSet) {
		var e *errs.Error
		errors.As(err, &e)
		return coded(e.Code, "%s", e.Message)
	}
	return nil
}

// shape is what a selection set expands to: its depth (introspection's apart), aliases and
// fields, and the most lists of introspected types or members on one path.
type shape struct {
	depth, aliases, fields                 int
	introspectionDepth, introspectionLists int
}

// measurer sizes a selection set in time linear in the document: each fragment is measured once
// and its shape reused wherever it is spread, so fragments spreading fragments twice over (an
// exponential expansion) cost nothing to measure. Counts saturate instead of overflowing.
type measurer struct {
	memo     map[string]shape
	visiting map[string]bool
}

func (m *measurer) set(set ast.SelectionSet) shape {
	var out shape
	for _, sel := range set {
		var s shape
		switch x := sel.(type) {
		case *ast.Field:
			child := m.set(x.SelectionSet)
			s = shape{depth: 1 + child.depth, aliases: child.aliases, fields: saturate(1 + child.fields),
				introspectionDepth: child.introspectionDepth, introspectionLists: child.introspectionLists}
			if x.Alias != "" && x.Alias != x.Name {
				s.aliases = saturate(s.aliases + 1)
			}
			if listsTypes(x) {
				s.introspectionLists++
			}
			if x.Name == "__schema" || x.Name == "__type" { // validation admits them on the query type only
				s.introspectionDepth, s.depth = max(s.depth, s.introspectionDepth), 0
			}
		case *ast.InlineFragment:
			s = m.set(x.SelectionSet)
		case *ast.FragmentSpread:
			if x.Definition == nil || m.visiting[x.Name] {
				continue
			}
			var ok bool
			if s, ok = m.memo[x.Name]; !ok {
				m.visiting[x.Name] = true
				s = m.set(x.Definition.SelectionSet)
				delete(m.visiting, x.Name)
				m.memo[x.Name] = s
			}
		}
		out.depth = max(out.depth, s.depth)
		out.introspectionDepth = max(out.introspectionDepth, s.introspectionDepth)
		out.introspectionLists = max(out.introspectionLists, s.introspectionLists)
		out.aliases = saturate(out.aliases + s.aliases)
		out.fields = saturate(out.fields + s.fields)
	}
	return out
}

func saturate(n int) int { return min(n, 1<<30) }

// listsTypes reports whether f lists types or a type's members: __Schema.types, __Type.fields,
// inputFields, interfaces or possibleTypes. (Validation has set its ObjectDefinition: only the
// introspection types are named with two underscores.)
func listsTypes(f *ast.Field) bool {
	if f.ObjectDefinition == nil {
		return false
	}
	switch f.ObjectDefinition.Name {
	case "__Schema":
		return f.Name == "types"
	case "__Type":
		return f.Name == "fields" || f.Name == "inputFields" || f.Name == "interfaces" || f.Name == "possibleTypes"
	}
	return false
}

// introspects reports whether a root selection asks for __schema or __type. Each fragment is
// looked into once, so a document of fragments spreading one another twice over costs its size,
// not the size of its expansion.
func introspects(set ast.SelectionSet) bool {
	return introspector{seen: map[string]bool{}}.set(set)
}

type introspector struct{ seen map[string]bool }

// selectsData reports whether a root selection asks for anything but __typename, __schema and
// __type, looking into each fragment once.
func selectsData(set ast.SelectionSet) bool {
	seen := map[string]bool{}
	var walk func(ast.SelectionSet) bool
	walk = func(set ast.SelectionSet) bool {
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				if !strings.HasPrefix(s.Name, "__") {
					return true
				}
			case *ast.InlineFragment:
				if walk(s.SelectionSet) {
					return true
				}
			case *ast.FragmentSpread:
				if s.Definition != nil && !seen[s.Name] {
					seen[s.Name] = true
					if walk(s.Definition.SelectionSet) {
						return true
					}
				}
			}
		}
		return false
	}
	return walk(set)
}

func (in introspector) set(set ast.SelectionSet) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__schema" || s.Name == "__type" {
				return true
			}
		case *ast.InlineFragment:
			if in.set(s.SelectionSet) {
				return true
			}
		case *ast.FragmentSpread:
			if s.Definition != nil && !in.seen[s.Name] {
				in.seen[s.Name] = true
				if in.set(s.Definition.SelectionSet) {
					return true
				}
			}
		}
	}
	return false
}

type methodKey struct{}

func httpMethod(ctx context.Context) string {
	m, _ := ctx.Value(methodKey{}).(string)
	return m
}

// requireViewer refuses every root field but introspection to an anonymous caller, before its
// resolver runs.
func requireViewer(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
	if _, err := authenticated(ctx); err != nil {
		if fc := graphql.GetRootFieldContext(ctx); fc == nil || !strings.HasPrefix(fc.Field.Name, "__") {
			graphql.AddError(ctx, err)
			return graphql.Null
		}
	}
	return next(ctx)
}

// documentLimits refuses, before validation, a document too large to validate cheaply. Several
// of gqlparser's validation rules cost more than the document's size: OverlappingFieldsCanBeMerged
// compares the fields sharing a response name pairwise, and between every two fragments spread
// side by side (4,900 __typename cost over a second of CPU); the validator walks each fragment
// again from every operation and fragment definition that reaches it. So this parses the query
// (linear, and bounded by the token limit and the body limit) and counts, in one pass, what those
// costs grow with; past a bound the document is refused with BAD_USER_INPUT and no rule sees it.
// What validation costs within these bounds is bounded too: at most selections² field pairs.
// A document found in the query cache has passed already and is not parsed again.
type documentLimits struct {
	tokens     int // the parser's token limit
	selections int // fields, fragment spreads and inline fragments written in the document
	sameName   int // fields sharing a response name in one selection set (inline fragments merged in)
	spreads    int // fragment spreads in one selection set (inline fragments merged in)
	nesting    int // selection sets nested in one another as written
	walk       int // selections the validator visits: each definition with every fragment it reaches
	// noIntrospection refuses any document naming __schema or __type.
	noIntrospection bool
	cache           graphql.Cache[*ast.QueryDocument]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = documentLimits{}

// newDocumentLimits bounds documents so that validating one costs at most a few milliseconds.
// The bounds are far above what a client writes: graphql-js's full introspection query has 78
// selections nested 10 deep.
func newDocumentLimits(tokens int, production bool, cache graphql.Cache[*ast.QueryDocument]) documentLimits {
	const selections = 500
	return documentLimits{tokens: tokens, selections: selections, sameName: 16, spreads: 32, nesting: 32,
		walk: 10 * selections, noIntrospection: production, cache: cache}
}

func (documentLimits) ExtensionName() string                   { return "DocumentLimits" }
func (documentLimits) Validate(graphql.ExecutableSchema) error { return nil }

func (l documentLimits) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if _, ok := l.cache.Get(ctx, p.Query); ok {
		return nil
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: p.Query}, l.tokens)
	if err != nil {
		return nil // the executor parses it again, and reports the error as it always does
	}
	return l.check(doc)
}

// check measures doc in time linear in its size: each selection is counted once, and the
// validator's walk is counted only up to its bound.
func (l documentLimits) check(doc *ast.QueryDocument) *gqlerror.Error {
	c := docCounter{limits: l, own: map[string]definitionSize{}}
	for _, op := range doc.Operations {
		if c.err == nil {
			c.definition("", op.SelectionSet)
		}
	}
	for _, f := range doc.Fragments {
		if _, dup := c.own[f.Name]; !dup && c.err == nil {
			c.definition(f.Name, f.SelectionSet)
		}
	}
	if c.err != nil {
		return c.err
	}
	if c.introspection && l.noIntrospection {
		return coded(errs.BadUserInput, "introspection is disabled")
	}

	// The validator walks each operation and each fragment definition with every fragment it
	// reaches, each of those once.
	walked := 0
	walk := func(own definitionSize) bool {
		walked += own.selections
		seen := map[string]bool{}
		stack := own.spreads
		for len(stack) > 0 && walked <= l.walk {
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			f, ok := c.own[name]
			if !ok || seen[name] {
				continue
			}
			seen[name] = true
			walked += f.selections
			stack = append(stack, f.spreads...)
		}
		return walked <= l.walk
	}
	for _, op := range c.ops {
		if !walk(op) {
			return tooLarge("validating this document would visit over %d selections; spread fewer fragments", l.walk)
		}
	}
	for _, f := range doc.Fragments {
		if !walk(c.own[f.Name]) {
			return tooLarge("validating this document would visit over %d selections; spread fewer fragments", l.walk)
		}
	}
	return nil
}

// definitionSize is what one operation or fragment definition writes itself.
type definitionSize struct {
	selections int
	spreads    []string // the names it spreads, with repeats
}

type docCounter struct {
	limits        documentLimits
	selections    int
	own           map[string]definitionSize // fragment definitions by name (the first of a name)
	ops           []definitionSize
	cur           *definitionSize
	introspection bool
	err           *gqlerror.Error
}

func (c *docCounter) definition(fragment string, set ast.SelectionSet) {
	var d definitionSize
	c.cur = &d
	c.set(set, 1)
	if fragment == "" {
		c.ops = append(c.ops, d)
	} else {
		c.own[fragment] = d
	}
}

// set counts one selection set, merging its inline fragments into it as the validator collects
// them, at nesting depth.
func (c *docCounter) set(set ast.SelectionSet, depth int) {
	names, spreads := map[string]int{}, 0
	c.items(set, depth, names, &spreads)
}

func (c *docCounter) items(set ast.SelectionSet, depth int, names map[string]int, spreads *int) {
	l := c.limits
	if depth > l.nesting {
		c.fail(tooLarge("selections are nested over %d deep", l.nesting))
		return
	}
	for _, sel := range set {
		if c.err != nil {
			return
		}
		c.selections++
		c.cur.selections++
		if c.selections > l.selections {
			c.fail(tooLarge("the document writes over %d selections (fields, fragment spreads and inline fragments)", l.selections))
			return
		}
		switch x := sel.(type) {
		case *ast.Field:
			if x.Name == "__schema" || x.Name == "__type" {
				c.introspection = true
			}
			name := x.Alias
			if name == "" {
				name = x.Name
			}
			if names[name]++; names[name] > l.sameName {
				c.fail(tooLarge("over %d fields are named %q in one selection set", l.sameName, name))
				return
			}
			if len(x.SelectionSet) > 0 {
				c.set(x.SelectionSet, depth+1)
			}
		case *ast.InlineFragment:
			c.items(x.SelectionSet, depth+1, names, spreads)
		case *ast.FragmentSpread:
			c.cur.spreads = append(c.cur.spreads, x.Name)
			if *spreads++; *spreads > l.spreads {
				c.fail(tooLarge("over %d fragments are spread in one selection set", l.spreads))
				return
			}
		}
	}
}

func (c *docCounter) fail(err *gqlerror.Error) {
	if c.err == nil {
		c.err = err
	}
}

// tooLarge is a document refused before validation: a validation failure, as gqlparser's own (a
// request error: see httpTransport for its status), presented as BAD_USER_INPUT.
func tooLarge(format string, args ...any) *gqlerror.Error {
	err := gqlerror.Errorf("document too large to validate: "+format, args...)
	errcode.Set(err, errcode.ValidationFailed)
	return err
}

// maxValidationErrors bounds the errors one document's validation reports, as graphql-js does:
// a document of n conflicting fields has n² conflicts.
const maxValidationErrors = 100

// validationRules are gqlparser's default rules, reporting at most maxValidationErrors errors
// together; without suggest, each rule that can suggest ("Did you mean ...?": fields, scalar
// leafs, enum values and input fields, argument names, type names) is its variant that does not.
// gqlgen's SetDisableSuggestion swaps only the first two.
func validationRules(suggest bool) func() *rules.Rules {
	return func() *rules.Rules {
		base := rules.NewDefaultRules()
		if !suggest {
			for _, r := range []validator.Rule{rules.FieldsOnCorrectTypeRuleWithoutSuggestions,
				rules.ScalarLeafsRuleWithoutSuggestions, rules.ValuesOfCorrectTypeRuleWithoutSuggestions,
				rules.KnownArgumentNamesRuleWithoutSuggestions, rules.KnownTypeNamesRuleWithoutSuggestions} {
				base.RemoveRule(strings.TrimSuffix(r.Name, "WithoutSuggestions"))
				base.AddRule(r.Name, r.RuleFunc)
			}
		}
		errs := 0
		out := rules.NewRules()
		for name, f := range base.GetInner() {
			out.AddRule(name, func(observers *validator.Events, addError validator.AddErrFunc) {
				f(observers, func(options ...validator.ErrorOption) {
					errs++
					switch {
					case errs <= maxValidationErrors:
						addError(options...)
					case errs == maxValidationErrors+1:
						addError(validator.Message("too many validation errors; only the first %d are shown", maxValidationErrors))
					}
				})
			})
		}
		return out
	}
}
