package graph

import (
	"context"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// shapeLimits refuses operations that are too deep or use too many aliases, and mutations or
// subscriptions sent over GET, after validation and before any resolver runs.
type shapeLimits struct {
	maxDepth, maxAliases int
	noIntrospection      bool
}

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
	if op.Operation != ast.Query && httpMethod(ctx) == http.MethodGet {
		return coded(codeBadUserInput, "%s operations are not allowed over GET; use POST", op.Operation)
	}
	if l.noIntrospection && introspects(op.SelectionSet) {
		return coded(codeBadUserInput, "introspection is disabled")
	}
	aliases := 0
	depth := measure(op.SelectionSet, 1, &aliases, map[string]bool{})
	if depth > l.maxDepth {
		return coded(codeBadUserInput, "operation is %d levels deep; at most %d are allowed", depth, l.maxDepth)
	}
	if aliases > l.maxAliases {
		return coded(codeBadUserInput, "operation uses %d aliases; at most %d are allowed", aliases, l.maxAliases)
	}
	return nil
}

// measure returns the depth of a selection set and counts its aliases, following fragments.
func measure(set ast.SelectionSet, level int, aliases *int, inFragment map[string]bool) int {
	deepest := level - 1
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if s.Alias != "" && s.Alias != s.Name {
				*aliases++
			}
			d = level
			if len(s.SelectionSet) > 0 {
				d = measure(s.SelectionSet, level+1, aliases, inFragment)
			}
		case *ast.InlineFragment:
			d = measure(s.SelectionSet, level, aliases, inFragment)
		case *ast.FragmentSpread:
			if s.Definition == nil || inFragment[s.Name] {
				continue
			}
			inFragment[s.Name] = true
			d = measure(s.Definition.SelectionSet, level, aliases, inFragment)
			delete(inFragment, s.Name)
		}
		deepest = max(deepest, d)
	}
	return deepest
}

// introspects reports whether a root selection asks for __schema or __type.
func introspects(set ast.SelectionSet) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__schema" || s.Name == "__type" {
				return true
			}
		case *ast.InlineFragment:
			if introspects(s.SelectionSet) {
				return true
			}
		case *ast.FragmentSpread:
			if s.Definition != nil && introspects(s.Definition.SelectionSet) {
				return true
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
	if viewer(ctx) == nil {
		if fc := graphql.GetRootFieldContext(ctx); fc == nil || !strings.HasPrefix(fc.Field.Name, "__") {
			graphql.AddError(ctx, errUnauthenticated)
			return graphql.Null
		}
	}
	return next(ctx)
}
