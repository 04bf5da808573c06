#!/usr/bin/env bash
# The dataset opens in h5dump (the HDF5 reference reader), with the layout of docs/DESIGN.md §5.
set -eu
h5dump=$1 file=$2
header=$("$h5dump" -H "$file")
for object in 'GROUP "ms"' 'GROUP "rgb"' 'GROUP "class_map"' 'DATASET "images"' 'DATASET "labels"' \
              'DATASET "split"' 'DATASET "band_mean"' 'ATTRIBUTE "ackd_format"'; do
  grep -q "$object" <<<"$header" || { echo "FAIL: h5dump -H shows no $object"; exit 1; }
done
"$h5dump" -a /ackd_format "$file" | grep -q '"dataset"' || { echo "FAIL: ackd_format attribute"; exit 1; }
"$h5dump" -d /ms/labels -s 0 -c 12 "$file" | grep -q '0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1' ||
  { echo "FAIL: /ms/labels does not start with the interleaved classes"; exit 1; }
echo "ok: h5dump reads $file"
