"""The instances of a derived series: the attributes copied from the source study, references to the source,
and the two storages (derived MR images, or one highdicom Parametric Map)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from napari_sff.io.dicom.errors import DicomWriteError
from napari_sff.io.dicom.slices import SliceGeometry

#: Stored integer = value in percent / RESCALE_SLOPE (percent × 10).
RESCALE_SLOPE = 0.1

RESEARCH_NOTE = "Research use only, not for diagnosis."


_PATIENT_STUDY_KEYWORDS = (
    # SOP common / patient / clinical trial subject
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence", "PatientComments",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointID",
    # general study / patient study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "ProcedureCodeSequence", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "PatientAge", "PatientSize", "PatientWeight",
    # frame of reference and what places the images on the patient
    "FrameOfReferenceUID", "PositionReferenceIndicator", "PatientPosition", "BodyPartExamined", "Laterality",
    "AnatomicalOrientationType",
    # how the source was acquired (the map is derived pixel by pixel from it)
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "MagneticFieldStrength",
    "ImagedNucleus", "SliceThickness",
)

#: Type 2 attributes of the patient and study modules: present (maybe empty) in every instance.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def new_uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=None))  # 2.25.<UUID>: unique without a registered root


def template_of(source: dict[str, Any], new_study: bool):
    """The source instance whose patient, study and frame of reference the map joins (or a new anonymous one)."""
    from pydicom import Dataset

    template = source.get("template")
    if template is not None:
        return template
    if source:
        raise DicomWriteError("the map's DICOM source lacks its template instance; re-open the DICOM series")
    assert new_study
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Anonymous^"  # a one-component PN, caret-terminated
    ds.PatientID = "anonymous"
    ds.PatientIdentityRemoved = "YES"
    ds.StudyInstanceUID = new_uid()
    ds.FrameOfReferenceUID = new_uid()
    ds.StudyDescription = "napari-sff research export"
    ds.StudyID = "napari-sff"
    ds.PositionReferenceIndicator = ""
    now = _dt.datetime.now()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    return ds


# -------------------------------------------------------------------------------------------- references
def references_of(source: dict[str, Any], geometry: SliceGeometry) -> dict[str, Any]:
    """The source series and, where the slices match one for one, the source instance of each slice."""
    if not source:
        return {"series": None, "per_slice": None}
    instances = [tuple(map(str, pair)) for pair in (source.get("instances") or [])]
    per_slice = None
    order = geometry.source_slice_order(source.get("template"))
    if len(instances) == geometry.shape[0] and order is not None:
        per_slice = instances if order == 1 else instances[::-1]
    return {"series": source.get("series_uid") or source["template"].get("SeriesInstanceUID"),
            "instances": instances, "per_slice": per_slice}


def _referenced_series(references: dict[str, Any]):
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.SeriesInstanceUID = references["series"]
    refs = []
    for sop_class, sop_instance in references["instances"]:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, sop_instance
        refs.append(ref)
    item.ReferencedInstanceSequence = DicomSequence(refs)
    return DicomSequence([item])


def _source_image(sop_class: str, sop_instance: str):
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator = "121322", "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    return item


# ---------------------------------------------------------------------------------------------- writers
def _window(kind: str) -> tuple[float, float]:
    return (12.5, 25.0) if kind == "sd" else (50.0, 100.0)  # percent: SD 0-25 pp, SFF 0-100 %


def _equipment(ds: Any) -> None:
    from napari_sff import __version__

    ds.Manufacturer = "napari-sff"
    ds.ManufacturerModelName = "napari-sff"
    ds.SoftwareVersions = __version__


def _copy_patient_study(ds: Any, template: Any) -> None:
    for keyword in _PATIENT_STUDY_KEYWORDS:
        if keyword in template:
            ds[keyword] = template[keyword]
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")


def _rwvm_item(kind: str, stored_range: tuple[float, float], slope: float):
    """Real World Value Mapping (stored value -> percent, UCUM "%"): the unit a viewer can show."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.LUTLabel = "SFF_SD" if kind == "sd" else "SFF"
    item.LUTExplanation = "fat fraction SD, percentage points" if kind == "sd" else "signal fat fraction, percent"
    item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped = (int(v) for v in stored_range)
    item.RealWorldValueSlope, item.RealWorldValueIntercept = slope, 0.0
    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "%", "UCUM", "percent"
    item.MeasurementUnitsCodeSequence = DicomSequence([unit])
    return DicomSequence([item])


def write_mr_images(folder: Path, percent: np.ndarray, geometry: SliceGeometry, template: Any,
                     references: dict[str, Any], *, series_uid: str, series_number: int, description: str,
                     derivation: str, kind: str) -> None:
    """One MR Image Storage file per slice: stored integers = percent × 10, RescaleSlope 0.1."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    stored = np.rint(percent / RESCALE_SLOPE)
    signed = bool(stored.min() < 0)
    info = np.iinfo(np.int16 if signed else np.uint16)
    stored = np.clip(stored, info.min, info.max).astype(np.int16 if signed else np.uint16)
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    center, width = _window(kind)
    thickness = template.get("SliceThickness")
    for k in range(stored.shape[0]):
        ds = Dataset()
        _copy_patient_study(ds, template)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = new_uid()
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.SeriesDate, ds.SeriesTime = date, time
        _equipment(ds)
        ds.ImageType = ["DERIVED", "SECONDARY", "FAT_FRACTION_SD" if kind == "sd" else "FAT_FRACTION"]
        ds.InstanceNumber = k + 1
        ds.ContentDate, ds.ContentTime = date, time
        ds.PatientOrientation = ""
        ds.DerivationDescription = derivation
        ds.ImageComments = RESEARCH_NOTE
        ds.BurnedInAnnotation = "NO"
        ds.RecognizableVisualFeatures = "NO"
        ds.LossyImageCompression = "00"
        ds.ScanningSequence = template.get("ScanningSequence") or "RM"
        ds.SequenceVariant = template.get("SequenceVariant") or "NONE"
        for keyword in ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength"):
            if keyword not in ds:
                setattr(ds, keyword, "")
        # geometry
        ds.ImagePositionPatient = [round(float(v), 6) for v in geometry.position(k)]
        ds.ImageOrientationPatient = [round(float(v), 8) + 0.0 for v in geometry.orientation]  # no -0.0
        ds.PixelSpacing = [round(v, 6) for v in geometry.pixel_spacing]
        ds.SliceThickness = thickness if thickness not in (None, "") else round(abs(geometry.slice_step), 6)
        ds.SpacingBetweenSlices = round(abs(geometry.slice_step), 6)
        ds.SliceLocation = round(float(geometry.position(k) @ geometry.normal), 6)
        # pixels: integers in percent × 10 -> percent by the modality LUT
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = int(signed)
        ds.RescaleIntercept, ds.RescaleSlope = 0, RESCALE_SLOPE
        ds.RescaleType = "PCT"  # DICOM defined term: percentage
        ds.WindowCenter, ds.WindowWidth = center, width
        ds.WindowCenterWidthExplanation = "SFF SD 0-25 pp" if kind == "sd" else "SFF 0-100 %"
        ds.RealWorldValueMappingSequence = _rwvm_item(kind, (int(info.min) if signed else 0, int(info.max)),
                                                      RESCALE_SLOPE)
        ds.PixelData = stored[k].tobytes()
        # references to the source
        if references["series"]:
            ds.ReferencedSeriesSequence = _referenced_series(references)
            if references["per_slice"]:
                ds.SourceImageSequence = DicomSequence([_source_image(*references["per_slice"][k])])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"IM_{k + 1:04d}.dcm", enforce_file_format=True)


def write_parametric_map(folder: Path, percent: np.ndarray, geometry: SliceGeometry, template: Any,
                          references: dict[str, Any], *, series_uid: str, series_number: int, description: str,
                          derivation: str, kind: str) -> None:
    """One highdicom Parametric Map instance: float32 percent, one frame per slice, content RESEARCH."""
    import highdicom as hd
    from pydicom import Dataset
    from pydicom.sr.coding import Code

    from napari_sff import __version__

    source = Dataset()
    for element in template:
        if element.keyword != "PixelData":
            source.add(element)
    if "SOPInstanceUID" not in source:  # a new study: nothing to reference, but highdicom wants a source
        source.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        source.SOPInstanceUID = new_uid()
        source.SeriesInstanceUID = new_uid()
        source.Modality = "MR"
    for keyword in _TYPE2:
        if keyword not in source:
            setattr(source, keyword, "")
    # highdicom checks the map's grid against its source's: give this private copy the map's own grid
    source.Rows, source.Columns = (int(n) for n in percent.shape[1:])
    source.PixelSpacing = geometry.pixel_spacing
    source.ImageOrientationPatient = geometry.orientation
    source.ImagePositionPatient = geometry.position(0).tolist()
    source.SliceThickness = float(abs(geometry.slice_step))
    values = percent.astype(np.float32)
    label = "SFF_SD" if kind == "sd" else "SFF"
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label, lut_explanation="fat fraction SD, percentage points" if kind == "sd" else
        "signal fat fraction, percent", unit=Code("%", "UCUM", "percent"),
        value_range=(float(values.min()), float(max(values.max(), values.min() + 1e-3))), slope=1.0, intercept=0.0)
    center, width = _window(kind)
    coords = hd.PixelMeasuresSequence(
        pixel_spacing=geometry.pixel_spacing, slice_thickness=float(abs(geometry.slice_step)),
        spacing_between_slices=float(abs(geometry.slice_step)))
    orientation = hd.PlaneOrientationSequence(coordinate_system="PATIENT", image_orientation=geometry.orientation)
    positions = [hd.PlanePositionSequence(coordinate_system="PATIENT", image_position=geometry.position(k).tolist())
                 for k in range(values.shape[0])]
    pm = hd.pm.ParametricMap(
        source_images=[source], pixel_array=values, series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=new_uid(), instance_number=1, manufacturer="napari-sff",
        manufacturer_model_name="napari-sff", software_versions=__version__, device_serial_number="none",
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=center, window_width=width)],
        content_description=derivation[:64], content_label=label, pixel_measures=coords,
        plane_orientation=orientation, plane_positions=positions,
        content_qualification=hd.ContentQualificationValues.RESEARCH)
    pm.SeriesDescription = description
    pm.DerivationDescription = derivation
    pm.ImageComments = RESEARCH_NOTE
    if references["series"]:
        pm.ReferencedSeriesSequence = _referenced_series(references)
    pm.save_as(folder / "IM_0001.dcm", enforce_file_format=True)
