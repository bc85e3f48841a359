"""Dataset layouts, one module each; ``medsynth.io.datasets`` holds the registry and ``load_dataset``.

* ``generate_output`` -- a ``medsynth generate`` output folder (manifest.json beside an nnU-Net or MONAI set)
* ``nnunet`` -- an nnU-Net v2 raw dataset
* ``cbis_ddsm`` -- CBIS-DDSM case-description CSVs and the DICOM tree they name
* ``folder`` -- ``images/`` with optional ``masks/`` and ``cases.csv``
* ``monai`` -- a MONAI / Decathlon datalist JSON

Each module defines ``LAYOUT``, a :class:`~medsynth.io.layouts.base.Layout`: its name, a
``recognise(path)`` that returns where the dataset is or the reason the path is not one, and a
``load(found, key=..., base_dir=...)`` that lists the cases. A new layout is one module and one entry
in ``medsynth.io.datasets.LAYOUTS``, as in nnU-Net's ``reader_writer_registry.py``.
"""
