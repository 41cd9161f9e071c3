"""`python -m export.to_onnx`, the documented command: the whole export of `export.run` (SavedModel, ONNX,
optional float16 and INT8 copies, parity), under the name users know."""

import sys

from export.run import main

if __name__ == "__main__":
    sys.exit(main())
