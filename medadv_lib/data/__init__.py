"""Medical (and natural) image datasets by name, verified, resized once and cached."""
from .checksums import ChecksumError, verify_file
from .datasets import Dataset, DatasetNotFoundError, ImageSplit, load_dataset, locate, verify
from .download import DownloadError, download
from .readers import DataFormatError
from .registry import DatasetInfo, dataset_names, get_info
from .subsets import stratified_split, stratified_subset

__all__ = ["ChecksumError", "DataFormatError", "Dataset", "DownloadError", "DatasetInfo", "DatasetNotFoundError", "ImageSplit", "dataset_names",
           "download", "get_info", "load_dataset", "locate", "stratified_split", "stratified_subset", "verify",
           "verify_file"]
