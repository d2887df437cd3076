import java.io.FileWriter;
import java.io.IOException;

/**
 * A stand-in AppMaster for the demo and the tests: appends one line per 100 ms to the file
 * given as its first argument, "epochMillis appId attempt pid". With a second argument N it
 * exits with status N after writing its first line (a crashing application).
 */
public class Ticker {
    public static void main(String[] args) throws IOException, InterruptedException {
        if (args.length < 1) {
            System.err.println("usage: Ticker OUTPUT_FILE [EXIT_CODE]");
            System.exit(2);
        }
        String app = System.getenv("GEARPUMP_APP_ID");
        String attempt = System.getenv("GEARPUMP_ATTEMPT");
        long pid = ProcessHandle.current().pid();
        System.out.println("Ticker started: app " + app + " attempt " + attempt + " pid " + pid);
        while (true) {
            try (FileWriter out = new FileWriter(args[0], true)) {
                out.write(System.currentTimeMillis() + " " + app + " " + attempt + " " + pid + "\n");
            }
            if (args.length > 1) {
                System.out.println("exiting with status " + args[1] + " as asked");
                System.exit(Integer.parseInt(args[1]));
            }
            Thread.sleep(100);
        }
    }
}
