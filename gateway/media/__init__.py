"""Images and files: upload limits, content sniffing, storage behind an interface, signed URLs."""

from gateway.media.service import Media, MediaError, Upload
from gateway.media.settings import UploadsSettings

__all__ = ["Media", "MediaError", "Upload", "UploadsSettings"]
