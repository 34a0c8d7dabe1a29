set -uo pipefail
# Needs .carry/colqwen.xz and .whl (colpali-engine + peft for the checkpoint generator).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.carry/colqwen.xz'), open('/tmp/colqwen', 'wb'))" && chmod +x /tmp/colqwen
nv=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])')
export LD_LIBRARY_PATH="$nv/cu13/lib:$(ls -d "$nv"/*/lib | tr '\n' ':')"
ldconfig -p | grep -q libcuda.so.1 || export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:$LD_LIBRARY_PATH"
# The checkpoint is reused when run.sh left it on this (warm) machine.
[ -f /tmp/m3b/done ] || python3 fixtures/gen/make_fixtures.py --preset 3b --out /tmp/m3b --no-golden --threads 16 > /tmp/gen.log 2>&1 || tail -5 /tmp/gen.log
M=/tmp/m3b/colqwen2.5-3b-random-v0.2
rm -rf /tmp/idx
/usr/bin/time -v /tmp/colqwen --model $M --index /tmp/idx --json -v ingest fixtures/pdfs/reportlab-userguide_broken-xref.pdf 2>&1 | grep -v "^ *[0-9]*:" | grep -E "seconds|pages|batch|Maximum resident|Elapsed" | tail -15
/tmp/colqwen --model $M --index /tmp/idx --json -q ingest fixtures/pdfs/reportlab-userguide_broken-xref.pdf | grep -E "pages_(ingested|skipped)"
