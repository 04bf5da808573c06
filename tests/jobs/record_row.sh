#!/usr/bin/env bash
# Stand-in stage for the Slurm sweep test: records what the sweep template handed it, one line
# "STAGE METHOD TEACHER STUDENT PAIR EXTRA..." in FILE, and fails when a student stage starts
# before its teacher's record exists (the afterok between the two arrays).
#   record_row.sh FILE STAGE TEACHER_RECORD METHOD TEACHER STUDENT PAIR [EXTRA...]
file=$1 stage=$2 teacher_record=$3
shift 3
if [ "$stage" != teacher ] && [ ! -s "$teacher_record" ]; then
  echo "record_row: $stage started before its teacher ($teacher_record missing)" >&2
  exit 1
fi
mkdir -p "$(dirname "$file")"
echo "$stage $*" >>"$file"
