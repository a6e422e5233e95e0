// GraphQL Code Generator: types every operation in src/ from the server's schema (../graph/*.graphqls).
// `npm run codegen` writes src/gql/ (committed, like gqlgen's generated code).
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../graph/*.graphqls",
  documents: ["src/**/*.graphql"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        scalars: { Time: "string", ID: "string" },
        enumsAsTypes: true,
        useTypeImports: true,
        skipTypename: false,
        dedupeFragments: true,
      },
    },
  },
  hooks: {},
};

export default config;
