#!/usr/bin/python3
"""Fixtures of the predict tests, written through GDAL's Python bindings: class
folders of 13-band uint16 GeoTIFFs whose classes differ in spectrum (for curate
and train), and a georeferenced scene tiled from those same images on a grid,
so that every tile's true class and source image are known. A strip of the
scene holds the nodata value in every band.

  make_scene.py OUT [--size S] [--per-class N] [--grid GX GY]

Writes OUT/ms/<class>/*.tif, OUT/scene.tif and OUT/scene_truth.npz (tile
classes, the source file of each tile, the nodata rows).
"""
import argparse
import os
import shutil

import numpy as np
from osgeo import gdal, osr

CLASSES = ["cropland", "forest", "urban", "water"]
NODATA = 0
# Sentinel-2-like zone 32N origin, 10 m pixels: what gdalinfo must report back.
ORIGIN_X, ORIGIN_Y, PIXEL = 499980.0, 5300040.0, 10.0
EPSG = 32632


def spectrum(k, bands=13):
    """A distinct smooth reflectance curve per class, in Sentinel-2 digital numbers."""
    b = np.arange(bands)
    return 1500 + 800 * k + 600 * np.sin(0.5 * b + 1.3 * k)


def write_raster(path, array, geotransform=None, epsg=None, nodata=None):
    """array: (bands, rows, cols) as a uint16 GeoTIFF, optionally georeferenced, with a nodata value."""
    bands, rows, cols = array.shape
    ds = gdal.GetDriverByName("GTiff").Create(path, cols, rows, bands, gdal.GDT_UInt16)
    if geotransform is not None:
        ds.SetGeoTransform(geotransform)
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(array[b].astype(np.uint16))
    ds = None  # closes and flushes


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--per-class", type=int, default=12)
    p.add_argument("--grid", type=int, nargs=2, default=(5, 4))
    a = p.parse_args()
    rng = np.random.default_rng(11)
    shutil.rmtree(a.out, ignore_errors=True)
    S = a.size
    images = {}
    for k, cls in enumerate(CLASSES):
        os.makedirs(os.path.join(a.out, "ms", cls))
        for i in range(a.per_class):
            texture = rng.normal(0, 250, size=(13, S, S))
            img = np.clip(spectrum(k)[:, None, None] + texture, 1, 65535)  # 0 is the scene's nodata
            rel = os.path.join(cls, f"{cls}_{i:03d}.tif")
            write_raster(os.path.join(a.out, "ms", rel), img)
            images[rel] = (k, img.astype(np.uint16))

    gx, gy = a.grid
    keys = sorted(images)
    tiles = rng.choice(len(keys), size=gx * gy, replace=False)
    scene = np.zeros((13, gy * S, gx * S), np.uint16)
    tile_class = np.zeros((gy, gx), np.int32)
    tile_file = []
    for t, j in enumerate(tiles):
        ty, tx = divmod(t, gx)
        k, img = images[keys[j]]
        scene[:, ty * S:(ty + 1) * S, tx * S:(tx + 1) * S] = img
        tile_class[ty, tx] = k
        tile_file.append(keys[j])
    nodata_rows = np.arange(gy * S - S // 2, gy * S)  # the bottom half-tile row: no data in any band
    scene[:, nodata_rows, :] = NODATA
    ulx, uly = ORIGIN_X, ORIGIN_Y
    geotransform = (ulx, PIXEL, 0.0, uly, 0.0, -PIXEL)
    write_raster(os.path.join(a.out, "scene.tif"), scene, geotransform, EPSG, NODATA)
    np.savez(os.path.join(a.out, "scene_truth.npz"), tile_class=tile_class, tile_file=np.array(tile_file),
             nodata_rows=nodata_rows, classes=np.array(CLASSES), size=S,
             geotransform=np.array(geotransform), epsg=EPSG)


if __name__ == "__main__":
    main()
