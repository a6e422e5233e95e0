package graph

import (
	"context"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// shapeLimits refuses operations that are too deep, too large once fragments are expanded, or
// use too many aliases; mutations over GET; subscriptions anywhere but a websocket. It runs after
// validation and before the complexity limit (whose walk expands fragments) and any resolver.
type shapeLimits struct {
	maxDepth, maxAliases, maxFields int
	noIntrospection                 bool
}

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
		return coded(codeBadUserInput, "subscriptions need a websocket (graphql-transport-ws)")
	}
	if op.Operation != ast.Query && method == http.MethodGet {
		return coded(codeBadUserInput, "%s operations are not allowed over GET; use POST", op.Operation)
	}
	if l.noIntrospection && introspects(op.SelectionSet) {
		return coded(codeBadUserInput, "introspection is disabled")
	}
	m := measurer{memo: map[string]shape{}, visiting: map[string]bool{}}
	sh := m.set(op.SelectionSet)
	switch {
	case sh.fields > l.maxFields:
		return coded(codeBadUserInput, "operation selects %d fields once fragments are expanded; at most %d are allowed", sh.fields, l.maxFields)
	case sh.depth > l.maxDepth:
		return coded(codeBadUserInput, "operation is %d levels deep; at most %d are allowed", sh.depth, l.maxDepth)
	case sh.aliases > l.maxAliases:
		return coded(codeBadUserInput, "operation uses %d aliases; at most %d are allowed", sh.aliases, l.maxAliases)
	}
	return nil
}

// shape is what a selection set expands to: its depth, aliases and fields.
type shape struct{ depth, aliases, fields int }

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
			s = shape{depth: 1 + child.depth, aliases: child.aliases, fields: saturate(1 + child.fields)}
			if x.Alias != "" && x.Alias != x.Name {
				s.aliases = saturate(s.aliases + 1)
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
		out.aliases = saturate(out.aliases + s.aliases)
		out.fields = saturate(out.fields + s.fields)
	}
	return out
}

func saturate(n int) int { return min(n, 1<<30) }

// introspects reports whether a root selection asks for __schema or __type. Each fragment is
// looked into once, so a document of fragments spreading one another twice over costs its size,
// not the size of its expansion.
func introspects(set ast.SelectionSet) bool {
	return introspector{seen: map[string]bool{}}.set(set)
}

type introspector struct{ seen map[string]bool }

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

func coded(code, format string, args ...any) *gqlerror.Error {
	err := gqlerror.Errorf(format, args...)
	err.Extensions = map[string]any{"code": code}
	return err
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
			graphql.AddError(ctx, errUnauthenticated)
			return graphql.Null
		}
	}
	return next(ctx)
}
