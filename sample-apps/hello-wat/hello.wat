;; hello-wat: a WAGI guest written by hand in WebAssembly text, so it builds with no toolchain.
;;
;; It is the local target's test and demo guest: every route below exercises one thing the host
;; must do (CGI env in, CGI headers out, stdin, stderr, file grants) or survive (trap, endless
;; loop, unbounded memory growth, a non-zero exit, output with no header block).
;; Behaviour is chosen by PATH_INFO, the part of the path below the matched wildcard route:
;;   (anything else) greeting with the version, the request path and query; one line to stderr
;;   /env     every environment variable, one per line (what the sandbox lets the guest see)
;;   /args    argv, one per line
;;   /echo    the request body (stdin) back, with the request's Content-Type
;;   /redirect  a Location header only (the host answers 302)
;;   /created   Status: 201 and a custom header
;;   /file    the file named by QUERY_STRING, opened under the first preopened directory
;;   /sleep   sleeps 400 ms (poll_oneoff), then greets: a request that stays in flight
;;   /trap    writes to stderr, then traps
;;   /loop    loops forever (the host's deadline must stop it)
;;   /grow    grows memory until refused, then traps (the host's memory cap must stop it)
;;   /exit    exits with status 3
;;   /nohdr   writes a body without the CGI header block
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Layout: 0..64 scratch (iovec, counts), 256..1023 strings, 1024 env pointers, 4096 env text,
  ;; 20480 argv pointers, 21504 argv text, 32768 I/O buffer (32 KiB), 65536 stdin (64 KiB),
  ;; 131072 stdout buffer (32 KiB), 163840 stderr buffer (16 KiB).
  (memory (export "memory") 3)

  (data (i32.const 256) "Hello from hello-wat v1!\n")                 ;; 25
  (data (i32.const 288) "Content-Type: text/plain\n\n")               ;; 26
  (data (i32.const 320) "PATH_INFO")                                  ;; 9
  (data (i32.const 336) "QUERY_STRING")                               ;; 12
  (data (i32.const 352) "SCRIPT_NAME")                                ;; 11
  (data (i32.const 368) "CONTENT_TYPE")                               ;; 12
  (data (i32.const 384) "path: ")                                     ;; 6
  (data (i32.const 392) "\nquery: ")                                  ;; 8
  (data (i32.const 400) "\n")                                         ;; 1
  (data (i32.const 408) "hello-wat: served ")                         ;; 18
  (data (i32.const 432) "/env")                                       ;; 4
  (data (i32.const 440) "/args")                                      ;; 5
  (data (i32.const 448) "/echo")                                      ;; 5
  (data (i32.const 456) "/redirect")                                  ;; 9
  (data (i32.const 472) "/created")                                   ;; 8
  (data (i32.const 480) "/file")                                      ;; 5
  (data (i32.const 488) "/sleep")                                     ;; 6
  (data (i32.const 496) "/trap")                                      ;; 5
  (data (i32.const 504) "/loop")                                      ;; 5
  (data (i32.const 512) "/grow")                                      ;; 5
  (data (i32.const 520) "/exit")                                      ;; 5
  (data (i32.const 528) "/nohdr")                                     ;; 6
  (data (i32.const 544) "Location: /hello/moved\n\n")                 ;; 24
  (data (i32.const 576) "Status: 201 Created\nX-Guest: made\nContent-Type: text/plain\n\ncreated\n") ;; 68
  (data (i32.const 656) "hello-wat: about to trap\n")                 ;; 25
  (data (i32.const 688) "hello-wat: memory refused\n")                ;; 26
  (data (i32.const 720) "Status: 404 Not Found\nContent-Type: text/plain\n\ncannot open file, errno ") ;; 72
  (data (i32.const 800) "no header block here\n")                     ;; 21
  (data (i32.const 832) "Content-Type: ")                             ;; 14

  ;; Output is buffered, as libc does for a real guest: one fd_write per stream per request
  ;; instead of one per piece (each write is a host call; a chatty guest pays for every one).
  (global $out_len (mut i32) (i32.const 0))  ;; stdout buffer: 131072..163840
  (global $err_len (mut i32) (i32.const 0))  ;; stderr buffer: 163840..180224

  (func $raw_write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $flush (param $fd i32)
    (if (i32.eq (local.get $fd) (i32.const 1))
      (then
        (if (global.get $out_len)
          (then (call $raw_write (i32.const 1) (i32.const 131072) (global.get $out_len))
                (global.set $out_len (i32.const 0)))))
      (else
        (if (global.get $err_len)
          (then (call $raw_write (i32.const 2) (i32.const 163840) (global.get $err_len))
                (global.set $err_len (i32.const 0)))))))

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (local $base i32) (local $cap i32) (local $cur i32)
    (if (i32.eq (local.get $fd) (i32.const 1))
      (then (local.set $base (i32.const 131072)) (local.set $cap (i32.const 32768))
            (local.set $cur (global.get $out_len)))
      (else (local.set $base (i32.const 163840)) (local.set $cap (i32.const 16384))
            (local.set $cur (global.get $err_len))))
    (if (i32.gt_u (i32.add (local.get $cur) (local.get $len)) (local.get $cap))
      (then (call $flush (local.get $fd)) (local.set $cur (i32.const 0))))
    (if (i32.gt_u (local.get $len) (local.get $cap))
      (then (call $raw_write (local.get $fd) (local.get $ptr) (local.get $len)) (return)))
    (memory.copy (i32.add (local.get $base) (local.get $cur)) (local.get $ptr) (local.get $len))
    (if (i32.eq (local.get $fd) (i32.const 1))
      (then (global.set $out_len (i32.add (local.get $cur) (local.get $len))))
      (else (global.set $err_len (i32.add (local.get $cur) (local.get $len))))))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; bytes a[0..n) == b[0..n)
  (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $no
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                           (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; NUL-terminated string at $s equals name[0..len)
  (func $is (param $s i32) (param $slen i32) (param $name i32) (param $len i32) (result i32)
    (if (i32.ne (local.get $slen) (local.get $len)) (then (return (i32.const 0))))
    (call $memeq (local.get $s) (local.get $name) (local.get $len)))

  ;; pointer to the value of env var name[0..len), or 0 when unset
  (func $getenv (param $name i32) (param $len i32) (result i32)
    (local $i i32) (local $entry i32)
    (block $none
      (loop $next
        (br_if $none (i32.ge_u (local.get $i) (i32.load (i32.const 16))))
        (local.set $entry (i32.load (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 4)))))
        (if (i32.and (call $memeq (local.get $entry) (local.get $name) (local.get $len))
                     (i32.eq (i32.load8_u (i32.add (local.get $entry) (local.get $len))) (i32.const 61)))
          (then (return (i32.add (local.get $entry) (i32.add (local.get $len) (i32.const 1))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; write the NUL-terminated string at $p (nothing for 0)
  (func $puts (param $fd i32) (param $p i32)
    (if (local.get $p) (then (call $write (local.get $fd) (local.get $p) (call $strlen (local.get $p))))))

  ;; write a table of NUL-terminated strings (count at $countp, pointers at $table), one per line
  (func $lines (param $table i32) (param $count i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (call $puts (i32.const 1) (i32.load (i32.add (local.get $table) (i32.mul (local.get $i) (i32.const 4)))))
        (call $write (i32.const 1) (i32.const 400) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  (func $greet
    (call $write (i32.const 1) (i32.const 288) (i32.const 26))
    (call $write (i32.const 1) (i32.const 256) (i32.const 25))
    (call $write (i32.const 1) (i32.const 384) (i32.const 6))
    (call $puts (i32.const 1) (call $getenv (i32.const 352) (i32.const 11)))
    (call $puts (i32.const 1) (call $getenv (i32.const 320) (i32.const 9)))
    (call $write (i32.const 1) (i32.const 392) (i32.const 8))
    (call $puts (i32.const 1) (call $getenv (i32.const 336) (i32.const 12)))
    (call $write (i32.const 1) (i32.const 400) (i32.const 1))
    (call $write (i32.const 2) (i32.const 408) (i32.const 18))
    (call $puts (i32.const 2) (call $getenv (i32.const 352) (i32.const 11)))
    (call $puts (i32.const 2) (call $getenv (i32.const 320) (i32.const 9)))
    (call $write (i32.const 2) (i32.const 400) (i32.const 1)))

  (func $echo
    (local $n i32) (local $total i32)
    (call $write (i32.const 1) (i32.const 832) (i32.const 14))
    (call $puts (i32.const 1) (call $getenv (i32.const 368) (i32.const 12)))
    (call $write (i32.const 1) (i32.const 400) (i32.const 1))
    (call $write (i32.const 1) (i32.const 400) (i32.const 1))
    (block $eof
      (loop $more
        (i32.store (i32.const 32) (i32.add (i32.const 65536) (local.get $total)))
        (i32.store (i32.const 36) (i32.sub (i32.const 65536) (local.get $total)))
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 40)))
        (local.set $n (i32.load (i32.const 40)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br_if $more (i32.lt_u (local.get $total) (i32.const 65536)))))
    (call $write (i32.const 1) (i32.const 65536) (local.get $total)))

  (func $file
    (local $q i32) (local $errno i32) (local $fd i32) (local $n i32)
    (local.set $q (call $getenv (i32.const 336) (i32.const 12)))
    ;; rights: fd_read (bit 1) | fd_seek (bit 2); open relative to the first preopen (fd 3)
    (local.set $errno
      (call $path_open (i32.const 3) (i32.const 0) (local.get $q) (call $strlen (local.get $q))
                       (i32.const 0) (i64.const 6) (i64.const 0) (i32.const 0) (i32.const 44)))
    (if (local.get $errno)
      (then
        (call $write (i32.const 1) (i32.const 720) (i32.const 72))
        ;; errno as two decimal digits
        (i32.store8 (i32.const 48) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
        (i32.store8 (i32.const 49) (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10))))
        (i32.store8 (i32.const 50) (i32.const 10))
        (call $write (i32.const 1) (i32.const 48) (i32.const 3))
        (return)))
    (local.set $fd (i32.load (i32.const 44)))
    (call $write (i32.const 1) (i32.const 288) (i32.const 26))
    (block $eof
      (loop $more
        (i32.store (i32.const 32) (i32.const 32768))
        (i32.store (i32.const 36) (i32.const 32768))
        (br_if $eof (call $fd_read (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40)))
        (local.set $n (i32.load (i32.const 40)))
        (br_if $eof (i32.eqz (local.get $n)))
        (call $write (i32.const 1) (i32.const 32768) (local.get $n))
        (br $more))))

  (func $sleep
    ;; one clock subscription at 32768: userdata 0, tag 0 (clock), monotonic, relative 400 ms
    (memory.fill (i32.const 32768) (i32.const 0) (i32.const 48))
    (i32.store (i32.const 32784) (i32.const 1))
    (i64.store (i32.const 32792) (i64.const 400000000))
    (drop (call $poll_oneoff (i32.const 32768) (i32.const 32832) (i32.const 1) (i32.const 40)))
    (call $greet))

  (func $main (export "_start")
    (call $route)
    (call $flush (i32.const 1))
    (call $flush (i32.const 2)))

  (func $route
    (local $path i32) (local $plen i32)
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 1024) (i32.const 4096)))
    (drop (call $args_sizes_get (i32.const 24) (i32.const 28)))
    (drop (call $args_get (i32.const 20480) (i32.const 21504)))
    (local.set $path (call $getenv (i32.const 320) (i32.const 9)))
    (if (local.get $path) (then (local.set $plen (call $strlen (local.get $path)))))

    (if (call $is (local.get $path) (local.get $plen) (i32.const 432) (i32.const 4))
      (then (call $write (i32.const 1) (i32.const 288) (i32.const 26))
            (call $lines (i32.const 1024) (i32.load (i32.const 16))) (return)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 440) (i32.const 5))
      (then (call $write (i32.const 1) (i32.const 288) (i32.const 26))
            (call $lines (i32.const 20480) (i32.load (i32.const 24))) (return)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 448) (i32.const 5))
      (then (call $echo) (return)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 456) (i32.const 9))
      (then (call $write (i32.const 1) (i32.const 544) (i32.const 24)) (return)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 472) (i32.const 8))
      (then (call $write (i32.const 1) (i32.const 576) (i32.const 68)) (return)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 480) (i32.const 5))
      (then (call $file) (return)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 488) (i32.const 6))
      (then (call $sleep) (return)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 496) (i32.const 5))
      (then (call $write (i32.const 2) (i32.const 656) (i32.const 25)) (call $flush (i32.const 2))
            (unreachable)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 504) (i32.const 5))
      (then (loop $forever (br $forever))))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 512) (i32.const 5))
      (then
        (loop $more
          (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        (call $write (i32.const 2) (i32.const 688) (i32.const 26))
        (call $flush (i32.const 2))
        (unreachable)))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 520) (i32.const 5))
      (then (call $proc_exit (i32.const 3))))
    (if (call $is (local.get $path) (local.get $plen) (i32.const 528) (i32.const 6))
      (then (call $write (i32.const 1) (i32.const 800) (i32.const 21)) (return)))
    (call $greet))
)
