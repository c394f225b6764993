# CLR_PYTHON: the Python interpreter with torch and torchvision. The parity tests run it
# for reference outputs, and the Python module (python/, docs/PYTHON.md) is built for it.
if(NOT CLR_PYTHON)
  foreach(candidate /usr/bin/python3 python3)
    find_program(_clr_py NAMES ${candidate} NO_CACHE)
    if(_clr_py)
      execute_process(COMMAND ${_clr_py} -c "import torch, torchvision"
                      RESULT_VARIABLE _clr_py_rc OUTPUT_QUIET ERROR_QUIET)
      if(_clr_py_rc EQUAL 0)
        set(CLR_PYTHON ${_clr_py} CACHE FILEPATH "Python with torch and torchvision" FORCE)
        break()
      endif()
    endif()
    unset(_clr_py)
  endforeach()
endif()
if(NOT CLR_PYTHON)
  message(WARNING "clr: no python3 with torch and torchvision found; the parity tests will fail. "
                  "Install python3-torch python3-torchvision (scripts/setup.sh does).")
  set(CLR_PYTHON python3)
endif()
