import sys

from controller.kube import main

sys.exit(main())
