"""DICOM Segmentation (SEG) of the final tumour mask, referencing its source radiograph.

Opt-in (`predict --dicom_seg`), and the one output that carries patient data: a SEG belongs to its
source's study, so the standard has it repeat the source's patient and study attributes (highdicom
copies them). Only this path reads the DICOM header beyond the pixel spacing.
"""

import io
import os

import highdicom as hd
import numpy as np
import pydicom
from absl import logging
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from kneejax.drawing import RISK_COLOURS
from kneejax.inference import render

# CID 7150/7151: the category SNOMED CT 49755003 (formerly SRT M-01000) and the type Neoplasm.
CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
PROPERTY = codes.SCT.Neoplasm
SEGMENT_LABEL = 'tumour'
SERIES_NUMBER = 901  # Clear of the low numbers that acquisitions use.
# Type 2 (required, may be empty) attributes that highdicom reads from the source; a source that
# lacks one (not conformant, but seen) gets it empty in the SEG rather than no SEG at all.
_TYPE2 = (
  'PatientName',
  'PatientID',
  'PatientBirthDate',
  'PatientSex',
  'AccessionNumber',
  'StudyID',
  'StudyDate',
  'StudyTime',
  'ReferringPhysicianName',
)
_REQUIRED_UIDS = ('SOPClassUID', 'SOPInstanceUID', 'StudyInstanceUID', 'SeriesInstanceUID')


class NoSegmentation(ValueError):
  """The source cannot be referenced by a SEG; the message says why (never patient data)."""


def encode(path: str | os.PathLike, mask: np.ndarray, version: str) -> bytes:
  """A binary SEG file with one segment, 'tumour', whose single frame is `mask`.

  Args:
    path: the DICOM file `mask` was predicted on (its header is read again here).
    mask: (H, W) bool tumour mask at the source's resolution; an empty mask gives an empty frame.
    version: the code version, recorded as the algorithm's and the software's version.

  Returns:
    The SEG as a DICOM file (Explicit VR Little Endian, frame bit-packed).

  Raises:
    NoSegmentation: the header lacks a UID to reference, or highdicom refuses the source.
  """
  source = pydicom.dcmread(path, stop_before_pixels=True)
  missing = [keyword for keyword in _REQUIRED_UIDS if keyword not in source]
  if missing:
    raise NoSegmentation(f'the source DICOM has no {", ".join(missing)}')
  for keyword in _TYPE2:
    source.setdefault(keyword, None)
  if hd.spatial.get_image_coordinate_system(source) is None:
    # A projection radiograph: highdicom would copy PixelSpacing into pixel measures without a
    # SliceThickness, which its own reader then rejects. The standard needs neither without a
    # frame of reference; the referenced source keeps its spacing.
    for keyword in ('PixelSpacing', 'SliceThickness'):
      source.pop(keyword, None)
  algorithm = hd.AlgorithmIdentificationSequence(
    name='kneejax', family=codes.cid7162.ArtificialIntelligence, version=version
  )
  segment = hd.seg.SegmentDescription(
    segment_number=1,
    segment_label=SEGMENT_LABEL,
    segmented_property_category=CATEGORY,
    segmented_property_type=PROPERTY,
    algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
    algorithm_identification=algorithm,
    display_color=hd.color.CIELabColor.from_rgb(*RISK_COLOURS[1][::-1].tolist()),
  )
  try:
    seg = hd.seg.Segmentation(
      source_images=[source],
      pixel_array=np.asarray(mask, bool),
      segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
      segment_descriptions=[segment],
      series_instance_uid=generate_uid(),
      series_number=SERIES_NUMBER,
      sop_instance_uid=generate_uid(),
      instance_number=1,
      manufacturer='kneejax',
      manufacturer_model_name='kneejax bone tumour detector',
      software_versions=version,
      device_serial_number=version,  # Type 1; the software is the device.
      omit_empty_frames=False,  # An empty mask is a frame of zeros, not a SEG without frames.
      series_description='kneejax tumour segmentation',
      content_label='TUMOUR',
      content_description=render.DISCLAIMER,
      content_qualification=hd.ContentQualificationValues.RESEARCH,
    )
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # Its message may quote a header value (e.g. an invalid PatientSex): the terminal gets it,
    # the reason (which goes into NAME.json) only its type.
    logging.warning('%s: no DICOM SEG: %s', os.fspath(path), e)
    raise NoSegmentation(
      f'highdicom cannot derive a SEG from this source ({type(e).__name__})'
    ) from e
  buffer = io.BytesIO()
  seg.save_as(buffer, enforce_file_format=True)
  return buffer.getvalue()
