# clr_unity_group(NAME SOURCES...): the sources compile as one translation unit of the
# target that lists them when that target has UNITY_BUILD ON and UNITY_BUILD_MODE
# GROUP. Sources in one group must not define the same name in an anonymous namespace.
function(clr_unity_group name)
  set_source_files_properties(${ARGN} PROPERTIES UNITY_GROUP ${name})
endfunction()
