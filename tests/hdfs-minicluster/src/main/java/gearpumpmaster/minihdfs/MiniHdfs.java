package gearpumpmaster.minihdfs;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

import sun.misc.Signal;

/**
 * A one-DataNode HDFS on 127.0.0.1 for the jar store tests.
 *
 * <p>Usage: {@code MiniHdfs BASE_DIR NAMENODE_PORT [--no-stdin]}. Prints
 * {@code NAMENODE_URI=hdfs://127.0.0.1:PORT} once HDFS accepts writes, then runs until SIGTERM
 * or, unless {@code --no-stdin}, until its standard input closes (so a test harness that dies
 * without cleaning up still takes HDFS down with it).
 *
 * <p>A base dir that already holds a formatted NameNode is reused as it is: a test can stop HDFS
 * in the middle of an upload and start it again at the same address with its data intact.
 */
public final class MiniHdfs {
  private static final long SAFE_MODE_WAIT_MILLIS = 120_000;

  private MiniHdfs() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 2 || args.length > 3 || (args.length == 3 && !args[2].equals("--no-stdin"))) {
      System.err.println("usage: MiniHdfs BASE_DIR NAMENODE_PORT [--no-stdin]");
      System.exit(2);
    }
    File baseDir = new File(args[0]).getAbsoluteFile();
    int port;
    try {
      port = Integer.parseInt(args[1]);
    } catch (NumberFormatException e) {
      System.err.println("NAMENODE_PORT must be a number, got " + args[1]);
      System.exit(2);
      return;
    }
    boolean watchStdin = args.length == 2;

    boolean reuse = isFormatted(baseDir);

    Configuration conf = new HdfsConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, baseDir.getPath());
    // Loopback only: tests never open a port on any other interface.
    conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
    conf.set("dfs.namenode.http-address", "127.0.0.1:0");
    conf.set("dfs.namenode.https-address", "127.0.0.1:0");
    conf.set("dfs.namenode.servicerpc-bind-host", "127.0.0.1");
    conf.set("dfs.namenode.lifeline.rpc-bind-host", "127.0.0.1");
    conf.set("dfs.datanode.address", "127.0.0.1:0");
    conf.set("dfs.datanode.http.address", "127.0.0.1:0");
    conf.set("dfs.datanode.https.address", "127.0.0.1:0");
    conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
    conf.setInt("dfs.replication", 1);
    // A stopped DataNode is dead to the NameNode within seconds, not the default 10 minutes.
    conf.setInt("dfs.heartbeat.interval", 1);
    conf.setInt("dfs.namenode.heartbeat.recheck-interval", 5_000);
    // Safe mode would otherwise hold writes back for 30 s after a restart.
    conf.setInt("dfs.namenode.safemode.extension", 0);

    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, baseDir)
        .numDataNodes(1)
        .nameNodePort(port)
        .format(!reuse)
        .manageNameDfsDirs(true)
        .manageDataDfsDirs(true)
        .checkExitOnShutdown(false)
        .build();

    // A JVM shutdown hook cannot stop HDFS cleanly (its DataNode removes shutdown hooks of its
    // own while stopping, which Java forbids during shutdown), so SIGTERM/SIGINT and the end of
    // stdin only release this latch and the main thread shuts the cluster down before exiting.
    CountDownLatch stopRequested = new CountDownLatch(1);
    Signal.handle(new Signal("TERM"), sig -> stopRequested.countDown());
    Signal.handle(new Signal("INT"), sig -> stopRequested.countDown());

    cluster.waitActive();
    long deadline = System.currentTimeMillis() + SAFE_MODE_WAIT_MILLIS;
    while (cluster.getNamesystem().isInSafeMode()) {
      if (System.currentTimeMillis() > deadline) {
        System.err.println("NameNode still in safe mode after " + SAFE_MODE_WAIT_MILLIS + " ms");
        System.exit(1);
      }
      Thread.sleep(100);
    }

    System.out.println("NAMENODE_URI=hdfs://127.0.0.1:" + cluster.getNameNodePort());
    System.out.flush();

    if (watchStdin) {
      Thread watcher = new Thread(() -> {
        waitForEof(System.in);
        stopRequested.countDown();
      }, "minihdfs-stdin");
      watcher.setDaemon(true);
      watcher.start();
    }
    stopRequested.await();
    // Not cluster.shutdown(): it schedules the whole base dir for deletion at JVM exit, and a
    // restart must find the namespace and blocks where it left them.
    cluster.shutdownDataNodes();
    cluster.shutdownNameNodes();
    System.exit(0);
  }

  /**
   * MiniDFSCluster keeps its NameNode directories as name-N-M (older releases: dfs/nameN) under
   * the base dir; a VERSION file in one means a previous run formatted it, and formatting again
   * would throw away the blocks a restart test expects to find.
   */
  private static boolean isFormatted(File baseDir) {
    File[] candidates = {baseDir, new File(baseDir, "dfs")};
    for (File dir : candidates) {
      File[] children = dir.listFiles();
      if (children == null) {
        continue;
      }
      for (File child : children) {
        if (child.getName().startsWith("name") && new File(child, "current/VERSION").isFile()) {
          return true;
        }
      }
    }
    return false;
  }

  private static void waitForEof(InputStream in) {
    byte[] buf = new byte[256];
    try {
      while (in.read(buf) >= 0) {
        // input is ignored: only its end matters
      }
    } catch (IOException e) {
      // a broken stdin means the parent is gone, the same as EOF
    }
  }
}
