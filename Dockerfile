# One image for every component: `pizza serve <component>` picks what runs.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/pizza ./cmd/pizza

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pizza /pizza
# Numeric, so Kubernetes can verify runAsNonRoot (distroless nonroot is 65532).
USER 65532:65532
# A container is reached from outside: the BFF listens on every interface (the default is loopback),
# and so refuses to start with the public development secret: set PIZZA_AUTH_SECRET.
ENV PIZZA_HTTP_ADDR=0.0.0.0:8080
ENTRYPOINT ["/pizza"]
CMD ["serve"]
