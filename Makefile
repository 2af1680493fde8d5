# CTC Lab: the two commands are `make report` and `make test`; everything else is a step of them.
PROFILE ?= quick
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
KERNELS := ctclab/kernels/build/.built
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# jupyter refuses to start as root without --allow-root (a container's root)
LAB_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1
LAB_PORT ?= 8888
# KenLM (optional, a source build): make KENLM=1 ...; CI always installs it
KENLM ?= $(if $(filter true,$(CI)),1,0)

.PHONY: report test lab exercises lint typecheck setup system-deps corpus emg-corpus typing-corpus benchmark clean

## report: the whole course under PROFILE (smoke | quick | full), written to report/index.html
report: setup corpus emg-corpus typing-corpus
	$(PYTHON) -m ctclab.report --profile $(PROFILE)

## test: the gates (ruff lint + format check, mypy), then the whole test suite (includes notebook smoke runs)
test: setup lint typecheck
	$(PYTHON) -m pytest

## lab: JupyterLab on the repository (notebooks/ and exercises/; no browser, 127.0.0.1, port LAB_PORT); it prints the URL to open, token included
lab: setup
	$(VENV)/bin/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/notebooks $(LAB_ROOT)

## exercises: the learner workspace in exercises/ (the course's exercises with self-checks; open it in JupyterLab)
exercises: setup
	$(PYTHON) -m ctclab.course.exercises

## lint: ruff over the package, the course modules, tests, benchmarks and notebooks
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## typecheck: mypy over the package and the course modules (settings in pyproject.toml)
typecheck: setup
	$(VENV)/bin/mypy

## setup: system packages, the virtual environment and the compiled ops (GRU recurrence, CTC loss; idempotent)
setup: system-deps $(STAMP) $(KERNELS)

system-deps:
	@if command -v espeak-ng >/dev/null && command -v flite >/dev/null && command -v text2wave >/dev/null \
		&& command -v sox >/dev/null && command -v chromium >/dev/null && command -v g++ >/dev/null \
		&& test -d /usr/share/festival/voices/english/kal_diphone && test -d /usr/share/festival/voices/english/ked_diphone \
		&& test -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts \
		&& ldconfig -p | grep -q libsndfile && ldconfig -p | grep -q libportaudio; then \
		echo "system packages: espeak-ng, flite, festival and its voices, sox, libsndfile, PortAudio, chromium, g++ present"; \
	else \
		echo "installing espeak-ng, flite, festival + voices, sox, libsndfile1, libportaudio2, chromium, g++ with apt-get"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
			espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
			sox libsndfile1 libportaudio2 chromium g++; \
	fi

$(STAMP): requirements.txt requirements.lock requirements-nodeps.txt requirements-kenlm.txt pyproject.toml
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt -c requirements.lock
	$(PYTHON) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@if [ "$(KENLM)" = 1 ]; then $(PYTHON) -m pip install --quiet -r requirements-kenlm.txt -c requirements.lock; \
		else echo "KenLM is optional and not installed by this run (make KENLM=1 setup); its cross-checks skip without it"; fi
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# the GRU recurrence and the CTC loss as TensorFlow CPU ops, compiled for this machine (ctclab/kernels)
$(KERNELS): $(STAMP) ctclab/kernels/gru_sequence.cc ctclab/kernels/ctc_loss.cc ctclab/kernels/__init__.py
	$(PYTHON) -m ctclab.kernels
	@touch $(KERNELS)

## corpus: the embedded speech corpus for PROFILE (data/speech for quick; cached)
corpus: setup
	$(PYTHON) -m ctclab.data.corpus --profile $(PROFILE)

## emg-corpus: the synthetic sEMG corpus (Gaddy & Klein layout) built from the speech corpus (cached)
emg-corpus: setup corpus
	$(PYTHON) -m ctclab.emg.corpus --profile $(PROFILE)

## typing-corpus: the synthetic EMG typing corpus (emg2qwerty's HDF5 layout) typed from the grammar's text (cached)
typing-corpus: setup
	$(PYTHON) -m ctclab.emg.typing_corpus --profile $(PROFILE)

## benchmark: every measured ratio (see benchmarks/README.md); decode and streaming use the report's runs when present
benchmark: setup corpus emg-corpus
	$(PYTHON) benchmarks/train_step.py
	$(PYTHON) benchmarks/models.py --quick
	$(PYTHON) benchmarks/throughput.py
	$(PYTHON) benchmarks/ctc_loss.py
	$(PYTHON) benchmarks/decode.py --profile $(PROFILE)
	$(PYTHON) benchmarks/streaming.py --profile $(PROFILE)

clean:
	rm -rf results report data/features
