#!/usr/bin/env python3
"""Sends real OpenTelemetry Python SDK span batches to an OTLP/HTTP endpoint.

Makes --spans spans with the SDK (a TracerProvider with an in-memory exporter),
most of them GenAI spans with gen_ai.* attributes and some plain ones, then
exports them with the SDK's OTLPSpanExporter (protobuf) in batches of --batch,
each batch --repeat times (a resent batch). Prints one JSON object per GenAI
span on stdout: what the collector should record. Exits 1 when an export fails.
Deterministic for a given --seed.
"""
import argparse
import json
import random
import sys
import uuid

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import Status, StatusCode

# (provider attribute value, recorded provider, models)
PROVIDERS = [
    ("openai", "openai", ["gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-3.5-turbo"]),
    ("anthropic", "anthropic", ["claude-3-5-sonnet-20241022", "claude-3-haiku"]),
    ("gcp.gemini", "google", ["gemini-1.5-flash-002", "gemini-1.5-pro"]),
    ("perplexity", "perplexity", ["llama-3.1-sonar-small-128k-online"]),
    ("acme", "acme", ["acme-large"]),  # unknown: recorded, unpriced
]
OPERATIONS = ["chat", "text_completion", "execute_tool", "invoke_agent"]
USERS = ["alice@example.com", "bob", str(uuid.UUID(int=0x6F1C1D9E8C1B4C439D0E6B7A3E2F1A00)), None]


class SeededIds(IdGenerator):
    """Trace and span ids from a seeded generator: the same --seed sends the same spans."""

    def __init__(self, seed):
        self.rnd = random.Random(seed)

    def generate_span_id(self):
        return self.rnd.getrandbits(64) or 1

    def generate_trace_id(self):
        return self.rnd.getrandbits(128) or 1


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("endpoint")
    p.add_argument("--spans", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--service", default="otel-it")
    args = p.parse_args()

    rnd = random.Random(args.seed)
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": args.service}),
        id_generator=SeededIds(args.seed),
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("pg_usage_analytics.it", "1.0")

    expected = []
    # Start times a fixed day plus the seed's hours (the same --seed, the same spans).
    base_ns = (1767225600 + args.seed * 3600) * 10**9
    for n in range(args.spans):
        start = base_ns + n * 1_000_000_000 + rnd.randrange(10**6)
        duration_ms = rnd.randrange(1, 5000)
        if n % 7 == 6:
            # A plain span: no gen_ai.usage.* attribute, ignored by the collector.
            with tracer.start_as_current_span("GET /health", start_time=start, end_on_exit=False) as s:
                s.set_attribute("http.request.method", "GET")
                s.end(end_time=start + duration_ms * 1_000_000)
            continue
        attr_value, recorded, models = PROVIDERS[n % len(PROVIDERS)]
        model = rnd.choice(models)
        op = rnd.choice(OPERATIONS)
        inp = rnd.randrange(0, 20000)
        out = rnd.randrange(0, 4000)
        cache_read = rnd.randrange(0, inp + 1) if n % 3 == 0 else 0
        reasoning = rnd.randrange(0, out + 1) if n % 4 == 0 else 0
        user = USERS[n % len(USERS)]
        failed = n % 11 == 0
        s = tracer.start_span(f"{op} {model}", start_time=start)
        # Older conventions (gen_ai.system) on every other span.
        s.set_attribute("gen_ai.provider.name" if n % 2 else "gen_ai.system", attr_value)
        s.set_attribute("gen_ai.request.model", model.split("-20")[0])
        s.set_attribute("gen_ai.response.model", model)
        s.set_attribute("gen_ai.operation.name", op)
        s.set_attribute("gen_ai.usage.input_tokens", inp)
        s.set_attribute("gen_ai.usage.output_tokens", out)
        if cache_read:
            s.set_attribute("gen_ai.usage.cache_read.input_tokens", cache_read)
        if reasoning:
            s.set_attribute("gen_ai.usage.reasoning.output_tokens", reasoning)
        agent = None
        if n % 5 == 0:
            agent = f"agent-{n % 3}"
            s.set_attribute("gen_ai.agent.id", agent)
            s.set_attribute("gen_ai.agent.name", f"Agent {n % 3}")
        if n % 2 == 0:
            s.set_attribute("gen_ai.framework", "langchain")
        if user is not None:
            s.set_attribute("user.id" if n % 3 else "enduser.id", user)
        s.set_attribute("gen_ai.request.temperature", 0.25 * (n % 4))
        if failed:
            s.set_attribute("error.type", "rate_limit")
            s.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
        s.end(end_time=start + duration_ms * 1_000_000)
        ctx = s.get_span_context()
        expected.append({
            "trace_id": format(ctx.trace_id, "032x"),
            "span_id": format(ctx.span_id, "016x"),
            "provider": recorded,
            "model": model,
            "message_type": op,
            "agent_id": agent or args.service,
            "agent_name": f"Agent {n % 3}" if agent else None,
            "framework": "langchain" if n % 2 == 0 else None,
            "user": user,
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_tokens": cache_read,
            "reasoning_tokens": reasoning,
            "response_time_ms": duration_ms,
            "success": not failed,
            "error_message": "429 Too Many Requests" if failed else None,
            "start_ns": start,
        })
    provider.shutdown()

    spans = list(memory.get_finished_spans())
    exporter = OTLPSpanExporter(
        endpoint=args.endpoint,
        timeout=args.timeout,
        compression=Compression.Gzip if args.gzip else Compression.NoCompression,
    )
    for i in range(0, len(spans), args.batch):
        batch = spans[i:i + args.batch]
        for attempt in range(args.repeat):
            result = exporter.export(batch)
            if result != SpanExportResult.SUCCESS:
                print(f"export of batch {i // args.batch} (attempt {attempt + 1}) failed: {result}", file=sys.stderr)
                sys.exit(1)
    exporter.shutdown()
    for e in expected:
        print(json.dumps(e))


if __name__ == "__main__":
    main()
