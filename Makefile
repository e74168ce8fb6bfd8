# bitnet-cli developer commands. Every target creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_MODEL := models/dummy-125M/ggml-model-i2_s.gguf

.PHONY: install test demo docs bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with the dev extra

test: $(STAMP)  ## run the test suite
	$(BIN)/pytest -q

$(DEMO_MODEL): | $(STAMP)
	$(BIN)/bitnet dummy --model-size 125M --outtype i2_s --outfile $(DEMO_MODEL)

demo: $(STAMP) $(DEMO_MODEL)  ## generate a small dummy model, compile the kernels once, run it
	$(BIN)/bitnet setup -m $(DEMO_MODEL) --use-pretuned -ld models/logs
	$(BIN)/bitnet run -m $(DEMO_MODEL) -p "The capital of France is" -n 32 -t 2 --temp 0

docs: $(STAMP)  ## regenerate docs/cli.md from --help
	$(BIN)/python scripts/gen_cli_docs.py

clean:
	rm -rf $(VENV) build *.egg-info
