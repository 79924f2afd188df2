#!/usr/bin/env python3
"""make demo's OpenTelemetry traffic: GenAI spans sent to usage-analytics-collector.

Instruments a small fake application with the OpenTelemetry Python SDK the way
an LLM app is instrumented: each "request" is an agent span (invoke_agent, no
token usage: the collector ignores it) with one to three model calls inside
(chat / execute_tool spans with gen_ai.usage.* attributes: input, output, cache
reads, Anthropic cache writes, reasoning tokens), timestamped now. The SDK's
BatchSpanProcessor and OTLP/HTTP exporter (protobuf) send them to ENDPOINT,
as in production. Sends --requests requests spread over --seconds seconds,
then flushes and prints one summary line. Ctrl-C / SIGTERM stop it early
(spans already ended are still flushed).

Models are ids of the shipped price catalog (a dated one resolves to its
catalog id); one agent uses a model the catalog does not know (unpriced).
Users are the demo's users (a0000000-…-0000000000NN) and one e-mail address
(recorded as its UUIDv5).
"""
import argparse
import os
import random
import signal
import sys
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

# (agent id, agent name, framework, gen_ai.provider.name, [(model, reasoning share)])
AGENTS = [
    ("otel-support-bot", "Support Bot", "openai-agents", "openai",
     [("gpt-5-mini-2025-08-07", 0.9), ("gpt-4.1-mini", 0.0)]),
    ("otel-code-reviewer", "Code Reviewer", "langgraph", "anthropic",
     [("claude-sonnet-4-5-20250929", 0.4), ("claude-haiku-4-5", 0.0)]),
    ("otel-research", "Research Assistant", "langgraph", "openai",
     [("gpt-5", 1.0), ("o4-mini", 1.0)]),
    ("otel-summarizer", "Summarizer", "google-adk", "gcp.gemini",
     [("gemini-2.5-flash", 0.8), ("gemini-2.5-pro", 1.0)]),
    ("otel-triage", "Triage", "crewai", "deepseek",
     [("deepseek-chat", 0.0), ("deepseek-reasoner", 1.0)]),
    ("otel-router", "In-house Router", "custom", "openai",
     [("acme-router-v2", 0.0)]),  # not in the catalog: recorded, unpriced
]
USERS = [f"a0000000-0000-4000-8000-{n:012d}" for n in range(10)] + ["alice@example.com"]

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


def model_call(tracer, rnd, provider, model, reasoning_share, op, who):
    """One model call span with token usage, like an instrumented SDK client."""
    inp = int(200 + rnd.random() ** 2 * 12000)
    out = int(30 + rnd.random() * 1200)
    with tracer.start_as_current_span(f"{op} {model}", kind=SpanKind.CLIENT) as s:
        s.set_attributes(who)
        s.set_attribute("gen_ai.provider.name", provider)
        s.set_attribute("gen_ai.operation.name", op)
        s.set_attribute("gen_ai.request.model", model.split("-20")[0])
        s.set_attribute("gen_ai.response.model", model)
        s.set_attribute("gen_ai.usage.input_tokens", inp)
        s.set_attribute("gen_ai.usage.output_tokens", out)
        if rnd.random() < 0.5:  # a cached prompt prefix
            s.set_attribute("gen_ai.usage.cache_read.input_tokens", int(inp * (0.3 + 0.6 * rnd.random())))
        elif provider == "anthropic" and rnd.random() < 0.5:  # the prefix written to the cache
            s.set_attribute("gen_ai.usage.cache_creation.input_tokens", int(inp * 0.5 * rnd.random()))
        if rnd.random() < reasoning_share:
            s.set_attribute("gen_ai.usage.reasoning.output_tokens", int(out * (0.2 + 0.7 * rnd.random())))
        s.set_attribute("gen_ai.request.temperature", round(rnd.random(), 2))
        time.sleep(rnd.uniform(0.0, 0.03))  # a short but real duration
        if rnd.random() < 0.04:
            s.set_attribute("error.type", "rate_limit_exceeded")
            s.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
        return 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("endpoint", help="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces")
    p.add_argument("--requests", type=int, default=200, help="agent requests to send (default 200)")
    p.add_argument("--seconds", type=float, default=30.0, help="spread them over this long (default 30)")
    p.add_argument("--service", default="demo-otel-app", help="service.name (default demo-otel-app)")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    rnd = random.Random(args.seed)
    provider = TracerProvider(resource=Resource.create({"service.name": args.service,
                                                        "deployment.environment.name": "demo"}))
    exporter = OTLPSpanExporter(endpoint=args.endpoint, timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    tracer = provider.get_tracer("pg_usage_analytics.demo", "0.2.0")

    started = time.monotonic()
    requests = calls = 0
    for n in range(args.requests):
        if stop:
            break
        agent_id, agent_name, framework, prov, models = AGENTS[n % len(AGENTS)]
        user = rnd.choice(USERS)
        with tracer.start_as_current_span(f"invoke_agent {agent_name}") as agent:
            # The collector reads each span alone: the model calls carry these too.
            who = {"gen_ai.agent.id": agent_id, "gen_ai.agent.name": agent_name,
                   "gen_ai.framework": framework, "user.id": user}
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.provider.name", prov)
            agent.set_attributes(who)
            for step in range(rnd.randint(1, 3)):
                model, share = rnd.choice(models)
                op = "chat" if step == 0 or rnd.random() < 0.6 else "execute_tool"
                calls += model_call(tracer, rnd, prov, model, share, op, who)
        requests += 1
        # Even pacing: request n leaves at n * seconds / requests.
        delay = started + (n + 1) * args.seconds / max(args.requests, 1) - time.monotonic()
        while delay > 0 and not stop:
            time.sleep(min(delay, 0.2))
            delay = started + (n + 1) * args.seconds / max(args.requests, 1) - time.monotonic()
    # Stopped early: the collector may be stopping too, so do not wait long for it.
    ok = provider.force_flush(2000 if stop else 15000)
    print(f"spans: sent {requests} agent requests with {calls} GenAI model-call spans to {args.endpoint} "
          f"in {time.monotonic() - started:.0f}s{'' if ok else ' (flush incomplete)'}"
          f"{' (stopped early)' if stop else ''}", flush=True)
    if stop:
        os._exit(0)  # the SDK's shutdown would retry the export
    provider.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
